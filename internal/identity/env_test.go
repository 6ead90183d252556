package identity

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/audittest"
	"github.com/warden-run/warden/internal/audit/filelog"
	"github.com/warden-run/warden/internal/store"
	"github.com/warden-run/warden/internal/store/sqlite"
)

const testIssuer = "https://warden.test"

// testGateway is a resource server tokens may be asked for.
const testGateway = "https://gateway.test/mcp"

// clock is a settable time source shared by every component of a test env.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a complete identity service on a real SQLite store in a temp dir.
type env struct {
	t      testing.TB
	ctx    context.Context
	st     store.Store
	clock  *clock
	keys   *Keyring
	view   *TrustView
	reg    *Registry
	issuer *TokenIssuer
	ver    *Verifier
	audit  *audit.Log
}

var testDomains = map[string]DomainPolicy{"prod": {RequireDPoP: true}, "dev": {}, "partner": {}}

func newEnv(t testing.TB) *env {
	t.Helper()
	// The store's directory is removed once the goroutines that use it are
	// done: cancelled below, they stop after the test, and SQLite deletes
	// its write-ahead files when the last connection closes, which
	// t.TempDir's removal raced with ("directory not empty").
	dir, err := os.MkdirTemp("", "warden-identity-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 100 {
			if os.RemoveAll(dir) == nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Errorf("the store's directory could not be removed")
	})
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(dir, "warden.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// Registered after the store's, so it runs first: the background
	// goroutines stop before the store closes under them.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// Whole seconds: iat has one-second resolution, as in production tokens.
	clk := &clock{t: time.Now().Truncate(time.Second).Add(500 * time.Millisecond)}
	mk, err := NewMasterKey(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := OpenKeyring(ctx, KeyringConfig{RetireAfter: MaxTokenLifetime + 30*time.Second, ClockSkew: 30 * time.Second, Now: clk.Now}, st, mk)
	if err != nil {
		t.Fatal(err)
	}
	view, err := OpenTrustView(ctx, TrustViewConfig{MaxStaleness: 5 * time.Second, Now: clk.Now}, st)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := NewRegistry(RegistryConfig{TrustDomains: testDomains, KeyGrace: time.Hour, Now: clk.Now}, st, view)
	if err != nil {
		t.Fatal(err)
	}
	ver, err := NewVerifier(VerifierConfig{Issuer: testIssuer, Audiences: []string{"warden", testGateway}, TrustDomains: testDomains,
		ClockSkew: 30 * time.Second, Now: clk.Now}, view)
	if err != nil {
		t.Fatal(err)
	}
	be, err := filelog.Open(filelog.Config{Dir: filepath.Join(t.TempDir(), "audit")})
	if err != nil {
		t.Fatal(err)
	}
	alog, err := audit.Open(audit.Config{}, be, audittest.Signer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { alog.Close(); be.Close() })
	iss, err := NewTokenIssuer(IssuerConfig{Issuer: testIssuer, Audience: "warden", Resources: []string{testGateway}, TokenTTL: 5 * time.Minute,
		MaxTokenTTL: 15 * time.Minute, ClockSkew: 30 * time.Second, TrustDomains: testDomains, Now: clk.Now}, st, keys, ver, alog)
	if err != nil {
		t.Fatal(err)
	}
	// Waiting for the next second moves the fake clock instead of sleeping.
	iss.sleep = func(_ context.Context, d time.Duration) error { clk.Advance(d); return nil }
	return &env{t: t, ctx: ctx, st: st, clock: clk, keys: keys, view: view, reg: reg, issuer: iss, ver: ver, audit: alog}
}

// testAgent is a registered agent and its private key.
type testAgent struct {
	id   string
	priv ed25519.PrivateKey
	kid  string
}

func (e *env) register(id string, roles []string, attrs map[string]string) testAgent {
	e.t.Helper()
	pub, priv := GenerateKey()
	if _, err := e.reg.Register(e.ctx, "admin:test", Registration{ID: id, Roles: roles, Owner: "team-test",
		Attributes: attrs, PublicKey: PublicJWK(pub)}); err != nil {
		e.t.Fatal(err)
	}
	return testAgent{id: id, priv: priv, kid: Thumbprint(pub)}
}

// assertionOpts shapes a client assertion; zero fields take valid defaults.
type assertionOpts struct {
	iss, sub, jti, kid string
	aud                []string
	exp, nbf           time.Time
	key                ed25519.PrivateKey
}

func (e *env) assertion(a testAgent, o assertionOpts) string {
	e.t.Helper()
	now := e.clock.Now()
	if o.iss == "" {
		o.iss = a.id
	}
	if o.sub == "" {
		o.sub = a.id
	}
	if o.jti == "" {
		o.jti = newJTI()
	}
	if o.aud == nil {
		o.aud = []string{testIssuer}
	}
	if o.exp.IsZero() {
		o.exp = now.Add(30 * time.Second)
	}
	if o.key == nil {
		o.key = a.priv
	}
	opts := &jose.SignerOptions{}
	if o.kid != "-" {
		kid := o.kid
		if kid == "" {
			kid = a.kid
		}
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: o.key}, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	c := jwt.Claims{Issuer: o.iss, Subject: o.sub, Audience: o.aud, Expiry: jwt.NewNumericDate(o.exp),
		IssuedAt: jwt.NewNumericDate(now), ID: o.jti}
	if !o.nbf.IsZero() {
		c.NotBefore = jwt.NewNumericDate(o.nbf)
	}
	tok, err := jwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// token gets an access token for a.
func (e *env) token(a testAgent) *IssuedToken {
	e.t.Helper()
	it, err := e.issuer.Issue(e.ctx, TokenRequest{GrantType: GrantClientCredentials,
		ClientAssertionType: AssertionTypeJWTBearer, ClientAssertion: e.assertion(a, assertionOpts{})})
	if err != nil {
		e.t.Fatalf("token for %s: %v", a.id, err)
	}
	return it
}

// proof makes a DPoP proof with key for method and url, bound to token.
func proof(t testing.TB, key ed25519.PrivateKey, method, url, token string, iat time.Time, jti string) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: key},
		(&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	c := map[string]any{"jti": jti, "htm": method, "htu": url, "iat": iat.Unix()}
	if token != "" {
		c["ath"] = AccessTokenHash(token)
	}
	tok, err := jwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
