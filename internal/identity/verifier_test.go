package identity

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/warden-run/warden/internal/store"
)

// forge signs claims with the issuer's real active key, to make tokens the
// issuer itself would never issue.
func (e *env) forge(t *testing.T, c *Claims, typ string) string {
	t.Helper()
	k, err := e.keys.current()
	if err != nil {
		t.Fatal(err)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: k.priv},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("kid", k.kid))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (e *env) validClaims(a testAgent) *Claims {
	now := e.clock.Now()
	return e.issuer.claims(a.id, a.id, a.kid, []string{"r"}, nil, "warden", now, now.Add(5*time.Minute))
}

func TestVerifierRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://dev/a", []string{"r"}, nil)
	now := e.clock.Now()
	k, _ := e.keys.current()
	issuerPub := k.priv.Public().(ed25519.PublicKey)
	_, otherKey := GenerateKey()

	mod := func(f func(*Claims)) *Claims { c := e.validClaims(a); f(c); return c }
	valid := e.forge(t, e.validClaims(a), "at+jwt")
	if _, err := e.ver.Verify(e.ctx, valid); err != nil {
		t.Fatalf("the unmodified token must verify: %v", err)
	}
	foreign := func() string {
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: otherKey},
			(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", Thumbprint(otherKey.Public().(ed25519.PublicKey))))
		tok, _ := jwt.Signed(s).Claims(e.validClaims(a)).Serialize()
		return tok
	}()
	// The payload re-encoded with one more role, the signature kept.
	parts := strings.Split(valid, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	payload = bytes.Replace(payload, []byte(`"roles":["r"]`), []byte(`"roles":["r","admin"]`), 1)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]

	cases := []struct {
		name  string
		token string
		want  error
	}{
		{"alg none", algNone(t, valid), ErrAlgorithm},
		{"HS256 with the issuer public key as secret", hs256(t, []byte(PublicJWK(issuerPub)), e.validClaims(a),
			map[jose.HeaderKey]any{"kid": k.kid, "typ": "at+jwt"}), ErrAlgorithm},
		{"HS256 with the raw issuer public key as secret", hs256(t, issuerPub, e.validClaims(a),
			map[jose.HeaderKey]any{"kid": k.kid, "typ": "at+jwt"}), ErrAlgorithm},
		{"unknown kid", foreign, ErrUnknownKey},
		{"tampered payload", tampered, ErrSignature},
		{"wrong aud", e.forge(t, mod(func(c *Claims) { c.Audience = jwt.Audience{"other"} }), "at+jwt"), ErrWrongAudience},
		{"wrong iss", e.forge(t, mod(func(c *Claims) { c.Issuer = "https://evil.test" }), "at+jwt"), ErrWrongIssuer},
		{"expired", e.forge(t, mod(func(c *Claims) {
			c.IssuedAt = jwt.NewNumericDate(now.Add(-10 * time.Minute))
			c.Expiry = jwt.NewNumericDate(now.Add(-time.Minute))
		}), "at+jwt"), ErrExpired},
		{"not yet valid", e.forge(t, mod(func(c *Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(2 * time.Minute)) }), "at+jwt"), ErrNotYetValid},
		{"lifetime over 15 minutes", e.forge(t, mod(func(c *Claims) { c.Expiry = jwt.NewNumericDate(now.Add(16 * time.Minute)) }), "at+jwt"), ErrLifetime},
		{"wrong typ", e.forge(t, e.validClaims(a), "JWT"), ErrTokenType},
		{"missing cnf", e.forge(t, mod(func(c *Claims) { c.Cnf = nil }), "at+jwt"), ErrMissingClaim},
		{"td not the subject's", e.forge(t, mod(func(c *Claims) { c.TrustDomain = "prod" }), "at+jwt"), ErrMalformed},
		{"malformed agent id", e.forge(t, mod(func(c *Claims) { c.Subject = "ai-agent://dev/../a" }), "at+jwt"), ErrInvalidAgentID},
		{"unknown agent", e.forge(t, mod(func(c *Claims) { c.Subject = "ai-agent://dev/ghost" }), "at+jwt"), ErrUnknownAgent},
		{"cnf.jkt not the agent's key", e.forge(t, mod(func(c *Claims) { c.Cnf.JKT = "x" }), "at+jwt"), ErrKeyNotBound},
		{"chain deeper than 5", e.forge(t, mod(func(c *Claims) {
			for range 6 {
				c.Act = &Actor{Subject: a.id, Act: c.Act}
			}
		}), "at+jwt"), ErrChainTooDeep},
		{"not a JWT", "eyJhbGciOiJFZERTQSJ9.e30", ErrMalformed},
		{"empty", "", ErrMalformed},
		{"too long", strings.Repeat("a", 9000), ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := e.ver.Verify(e.ctx, c.token)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestVerifierSeesRevocationAtOnce(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		revoke func(e *env, a testAgent, it *IssuedToken) error
		want   error
	}{
		{"revoked token", func(e *env, a testAgent, it *IssuedToken) error {
			return e.reg.RevokeToken(e.ctx, "admin:test", it.JTI, a.id, time.Time{}, "test")
		}, ErrTokenRevoked},
		{"revoked agent", func(e *env, a testAgent, _ *IssuedToken) error {
			_, err := e.reg.RevokeTokens(e.ctx, "admin:test", a.id, "test")
			return err
		}, ErrAgentRevoked},
		{"disabled agent", func(e *env, a testAgent, _ *IssuedToken) error {
			_, err := e.reg.SetStatus(e.ctx, "admin:test", a.id, store.StatusDisabled, "test")
			return err
		}, ErrAgentInactive},
		{"quarantined agent", func(e *env, a testAgent, _ *IssuedToken) error {
			_, err := e.reg.SetStatus(e.ctx, "admin:test", a.id, store.StatusQuarantined, "test")
			return err
		}, ErrAgentInactive},
		{"key rotated without grace", func(e *env, a testAgent, _ *IssuedToken) error {
			pub, _ := GenerateKey()
			_, err := e.reg.RotateKey(e.ctx, "admin:test", a.id, PublicJWK(pub), 0)
			return err
		}, ErrKeyNotBound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			a := e.register("ai-agent://dev/a", []string{"r"}, nil)
			it := e.token(a)
			if _, err := e.ver.Verify(e.ctx, it.AccessToken); err != nil {
				t.Fatal(err) // warms the signature cache too
			}
			if err := c.revoke(e, a, it); err != nil {
				t.Fatal(err)
			}
			if _, err := e.ver.Verify(e.ctx, it.AccessToken); !errors.Is(err, c.want) {
				t.Fatalf("cached token after %s: %v, want %v", c.name, err, c.want)
			}
		})
	}
}

func TestVerifierExpiryIsCheckedOnCachedTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://dev/a", []string{"r"}, nil)
	it := e.token(a)
	if _, err := e.ver.Verify(e.ctx, it.AccessToken); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(5*time.Minute + 31*time.Second)
	if _, err := e.ver.Verify(e.ctx, it.AccessToken); !errors.Is(err, ErrExpired) {
		t.Fatalf("cached token past exp + skew: %v", err)
	}
}

func TestVerifyRequestDPoP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	prod := e.register("ai-agent://prod/a", []string{"r"}, nil)
	dev := e.register("ai-agent://dev/b", []string{"r"}, nil)
	_, stranger := GenerateKey()
	url := "https://pep.test/mcp"
	pt := e.token(prod).AccessToken
	dt := e.token(dev).AccessToken
	now := e.clock.Now()

	good := proof(t, prod.priv, "POST", url, pt, now, "p-1")
	if _, err := e.ver.VerifyRequest(e.ctx, Request{Token: pt, DPoP: good, Method: "POST", URL: url}); err != nil {
		t.Fatalf("valid proof: %v", err)
	}
	cases := []struct {
		name string
		req  Request
		want error
	}{
		{"replayed proof", Request{Token: pt, DPoP: good, Method: "POST", URL: url}, ErrReplay},
		{"proof key not cnf.jkt", Request{Token: pt, DPoP: proof(t, stranger, "POST", url, pt, now, "p-2"), Method: "POST", URL: url}, ErrDPoPKeyMismatch},
		{"proof required in prod", Request{Token: pt, Method: "POST", URL: url}, ErrDPoPRequired},
		{"proof for another token", Request{Token: pt, DPoP: proof(t, prod.priv, "POST", url, dt, now, "p-3"), Method: "POST", URL: url}, ErrDPoP},
		{"proof for another method", Request{Token: pt, DPoP: proof(t, prod.priv, "GET", url, pt, now, "p-4"), Method: "POST", URL: url}, ErrDPoP},
		{"proof for another URL", Request{Token: pt, DPoP: proof(t, prod.priv, "POST", "https://pep.test/other", pt, now, "p-5"), Method: "POST", URL: url}, ErrDPoP},
		{"stale proof", Request{Token: pt, DPoP: proof(t, prod.priv, "POST", url, pt, now.Add(-2*time.Minute), "p-6"), Method: "POST", URL: url}, ErrExpired},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := e.ver.VerifyRequest(e.ctx, c.req); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	if _, err := e.ver.VerifyRequest(e.ctx, Request{Token: dt, Method: "GET", URL: url}); err != nil {
		t.Fatalf("dev does not require DPoP: %v", err)
	}
}

func TestVerifierFailsClosedWhenStateIsStale(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://dev/a", []string{"r"}, nil)
	it := e.token(a)
	// Changes may have been missed since 6s ago (MaxStaleness is 5s).
	e.view.uncertainSince.Store(e.clock.Now().Add(-6 * time.Second).UnixNano())
	if _, err := e.ver.Verify(e.ctx, it.AccessToken); !errors.Is(err, ErrStateUnavailable) {
		t.Fatalf("stale view: %v", err)
	}
	e.view.uncertainSince.Store(e.clock.Now().Add(-time.Second).UnixNano())
	if _, err := e.ver.Verify(e.ctx, it.AccessToken); err != nil {
		t.Fatalf("within MaxStaleness: %v", err)
	}
}

// faultyStore is the real store with reads that can be made to fail, the way
// a database that stops answering fails, and a feed the test publishes to.
type faultyStore struct {
	store.Store
	fail     atomic.Bool
	feedDown atomic.Bool
	feed     store.Broadcaster
}

func (f *faultyStore) Subscribe(ctx context.Context) <-chan store.Change {
	return f.feed.Subscribe(ctx)
}

var errInjected = errors.New("injected store failure")

func (f *faultyStore) Agents(ctx context.Context, flt store.AgentFilter) ([]store.Agent, error) {
	if f.fail.Load() {
		return nil, errInjected
	}
	return f.Store.Agents(ctx, flt)
}

func (f *faultyStore) Agent(ctx context.Context, id string) (store.Agent, error) {
	if f.fail.Load() {
		return store.Agent{}, errInjected
	}
	return f.Store.Agent(ctx, id)
}

func (f *faultyStore) FeedHealthy() bool { return !f.feedDown.Load() && f.Store.FeedHealthy() }

func TestTrustViewUncertainty(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		fault func(*faultyStore, *TrustView)
	}{
		{"feed down", func(f *faultyStore, v *TrustView) { f.feedDown.Store(true) }},
		{"a subscriber falls behind and the resync fails", func(f *faultyStore, v *TrustView) {
			f.fail.Store(true)
			// More changes than a subscriber holds, while reads fail and the
			// follower is busy with them: the feed replaces the queue with a resync.
			for range 300 {
				f.feed.Publish(store.Change{Kind: store.ChangeAgent, Key: "ai-agent://dev/a"})
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			fs := &faultyStore{Store: e.st}
			ctx, cancel := context.WithCancel(e.ctx)
			defer cancel()
			v, err := OpenTrustView(ctx, TrustViewConfig{MaxStaleness: 5 * time.Second, Now: e.clock.Now}, fs)
			if err != nil {
				t.Fatal(err)
			}
			c.fault(fs, v)
			waitUntil(t, func() bool { return v.uncertainSince.Load() != 0 })
			if err := v.Fresh(); err != nil {
				t.Fatalf("stale before MaxStaleness: %v", err)
			}
			e.clock.Advance(6 * time.Second)
			if err := v.Fresh(); !errors.Is(err, ErrStateUnavailable) {
				t.Fatalf("uncertain for longer than MaxStaleness: %v", err)
			}
			// Repaired: the next reload, started with the feed up, makes it certain again.
			fs.fail.Store(false)
			fs.feedDown.Store(false)
			waitUntil(t, func() bool { return v.Fresh() == nil })
		})
	}
}

func waitUntil(t *testing.T, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReEnablingDoesNotRestoreTokens(t *testing.T) {
	t.Parallel()
	for _, status := range []store.AgentStatus{store.StatusDisabled, store.StatusQuarantined} {
		e := newEnv(t)
		a := e.register("ai-agent://dev/a", []string{"r"}, nil)
		leaked := e.token(a)
		if _, err := e.reg.SetStatus(e.ctx, "admin:test", a.id, status, "incident"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.reg.SetStatus(e.ctx, "admin:test", a.id, store.StatusActive, "resolved"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.ver.Verify(e.ctx, leaked.AccessToken); !errors.Is(err, ErrAgentRevoked) {
			t.Fatalf("%s then enabled: the old token is %v, want ErrAgentRevoked", status, err)
		}
		if _, err := e.ver.Verify(e.ctx, e.token(a).AccessToken); err != nil {
			t.Fatalf("a new token after enabling: %v", err)
		}
	}
}

func TestRevocationReachesTheViewWithoutTheStore(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://dev/a", []string{"r"}, nil)
	it := e.token(a)
	// A revocation announced by another replica is enforced from the
	// announcement alone, even while the store cannot be read.
	e.view.apply(e.ctx, store.Change{Kind: store.ChangeTokenRevoked, Key: it.JTI})
	if _, err := e.ver.Verify(e.ctx, it.AccessToken); !errors.Is(err, ErrTokenRevoked) {
		t.Fatalf("announced revocation: %v", err)
	}
}

// TestTokenCacheDropsExpiredTokens: tokens are dropped once expired, not
// only when the cache is full: a cache far from full keeps the live ones.
func TestTokenCacheDropsExpiredTokens(t *testing.T) {
	t.Parallel()
	c := newTokenCache(1 << 16)
	now := time.Now()
	for i := range 1000 {
		c.put(fmt.Sprint("old-", i), &Token{Expiry: now.Add(time.Minute)}, now)
	}
	later := now.Add(2 * time.Minute)
	c.put("new", &Token{Expiry: later.Add(time.Minute)}, later)
	if n := c.n.Load(); n != 1 || c.get("new") == nil {
		t.Fatalf("%d tokens cached two minutes after 1,000 expired, want the one live", n)
	}
	// Between sweeps, nothing is walked.
	c.put("expired-meanwhile", &Token{Expiry: later}, later.Add(time.Second))
	if n := c.n.Load(); n != 2 {
		t.Fatalf("%d tokens cached, want 2", n)
	}
}

func TestTokenCacheStaysBounded(t *testing.T) {
	t.Parallel()
	c := newTokenCache(16)
	now := time.Now()
	for i := range 100 {
		exp := now.Add(time.Minute)
		if i%2 == 0 {
			exp = now.Add(-time.Minute) // expired ones go first
		}
		c.put(fmt.Sprint(i), &Token{Expiry: exp}, now)
	}
	size := 0
	c.m.Range(func(_, _ any) bool { size++; return true })
	if size > 16 || int64(size) != c.n.Load() {
		t.Fatalf("%d cached, counted %d, limit 16", size, c.n.Load())
	}
	if c.get("99") == nil {
		t.Fatal("the newest token is not cached")
	}
}
