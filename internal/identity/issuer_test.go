package identity

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/warden-run/warden/internal/store"
)

func TestClientCredentialsIssuesBoundToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://prod/finance/trader", []string{"trader", "reader"}, nil)
	it := e.token(a)
	if it.TokenType != "Bearer" || it.ExpiresIn != 300 || it.Scope != "reader trader" {
		t.Fatalf("response %+v", it)
	}
	tok, err := e.ver.Verify(e.ctx, it.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	c := tok.Claims
	if c.Issuer != testIssuer || c.Subject != a.id || c.ClientID != a.id || !c.Audience.Contains("warden") ||
		c.TrustDomain != "prod" || c.Cnf.JKT != a.kid || !slices.Equal(c.Roles, []string{"reader", "trader"}) ||
		c.Act != nil || c.ID == "" || c.NotBefore == nil {
		t.Fatalf("claims %+v", c)
	}
	if got := tok.Expiry.Sub(tok.IssuedAt); got != 5*time.Minute {
		t.Fatalf("lifetime %s", got)
	}
}

func TestClientCredentialsOptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://dev/a", []string{"trader", "reader"}, nil)
	it, err := e.issuer.Issue(e.ctx, TokenRequest{GrantType: GrantClientCredentials, ClientAssertionType: AssertionTypeJWTBearer,
		ClientAssertion: e.assertion(a, assertionOpts{}), Scope: "reader", ExpiresIn: 900})
	if err != nil {
		t.Fatal(err)
	}
	if it.Scope != "reader" || it.ExpiresIn != 900 {
		t.Fatalf("narrowed scope and lifetime: %+v", it)
	}
	// A token endpoint DPoP proof with the agent's key makes a DPoP token.
	p := proof(t, a.priv, "POST", testIssuer+"/oauth/token", "", e.clock.Now(), "p1")
	it, err = e.issuer.Issue(e.ctx, TokenRequest{GrantType: GrantClientCredentials, ClientAssertionType: AssertionTypeJWTBearer,
		ClientAssertion: e.assertion(a, assertionOpts{}), DPoP: p})
	if err != nil || it.TokenType != "DPoP" {
		t.Fatalf("DPoP at the token endpoint: %+v %v", it, err)
	}
}

// A token asked for a configured resource (RFC 8707) names it, and only it,
// as its audience; one asked for anything else is refused.
func TestResourceIndicators(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://dev/a", []string{"reader"}, nil)
	for _, c := range []struct{ resource, aud string }{{"", "warden"}, {"warden", "warden"}, {testGateway, testGateway}} {
		it, err := e.issuer.Issue(e.ctx, TokenRequest{GrantType: GrantClientCredentials, ClientAssertionType: AssertionTypeJWTBearer,
			ClientAssertion: e.assertion(a, assertionOpts{}), Resource: c.resource})
		if err != nil {
			t.Fatalf("resource %q: %v", c.resource, err)
		}
		tok, err := e.ver.Verify(e.ctx, it.AccessToken)
		if err != nil || !slices.Equal([]string(tok.Audience), []string{c.aud}) {
			t.Fatalf("resource %q: aud %v (%v), want [%s]", c.resource, tok, err, c.aud)
		}
	}
	_, err := e.issuer.Issue(e.ctx, TokenRequest{GrantType: GrantClientCredentials, ClientAssertionType: AssertionTypeJWTBearer,
		ClientAssertion: e.assertion(a, assertionOpts{}), Resource: "https://elsewhere.example/mcp"})
	if !errors.Is(err, ErrInvalidTarget) {
		t.Fatalf("unknown resource: %v, want ErrInvalidTarget", err)
	}
}

// hs256 signs claims with HMAC-SHA256 using secret: the classic key-confusion forgery.
func hs256(t *testing.T, secret []byte, claims any, hdr map[jose.HeaderKey]any) string {
	t.Helper()
	opts := &jose.SignerOptions{ExtraHeaders: hdr}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// algNone re-encodes a signed JWT with alg none and no signature.
func algNone(t *testing.T, signed string) string {
	parts := strings.Split(signed, ".")
	hdr := map[string]any{}
	b, _ := base64.RawURLEncoding.DecodeString(parts[0])
	json.Unmarshal(b, &hdr)
	hdr["alg"] = "none"
	nb, _ := json.Marshal(hdr)
	return base64.RawURLEncoding.EncodeToString(nb) + "." + parts[1] + "."
}

func TestTokenEndpointRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://prod/finance/trader", []string{"trader"}, nil)
	off := e.register("ai-agent://prod/finance/off", []string{"trader"}, nil)
	if _, err := e.reg.SetStatus(e.ctx, "admin:test", off.id, store.StatusDisabled, "test"); err != nil {
		t.Fatal(err)
	}
	quar := e.register("ai-agent://prod/finance/quarantined", []string{"trader"}, nil)
	if _, err := e.reg.SetStatus(e.ctx, "admin:test", quar.id, store.StatusQuarantined, "test"); err != nil {
		t.Fatal(err)
	}
	_, stranger := GenerateKey()
	now := e.clock.Now()
	pub := a.priv.Public().(ed25519.PublicKey)
	used := e.assertion(a, assertionOpts{jti: "used-once"})
	if _, err := e.issuer.Issue(e.ctx, ccReq(used)); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name      string
		req       TokenRequest
		want      error
		oauthCode string
	}{
		{"alg none", ccReq(algNone(t, e.assertion(a, assertionOpts{jti: "j-none"}))), ErrAlgorithm, "invalid_client"},
		{"HS256 with the public key as secret", ccReq(hs256(t, []byte(PublicJWK(pub)),
			jwt.Claims{Issuer: a.id, Subject: a.id, Audience: jwt.Audience{testIssuer}, Expiry: jwt.NewNumericDate(now.Add(30 * time.Second)), ID: "j-hs"}, nil)),
			ErrAlgorithm, "invalid_client"},
		{"HS256 with the raw public key as secret", ccReq(hs256(t, pub,
			jwt.Claims{Issuer: a.id, Subject: a.id, Audience: jwt.Audience{testIssuer}, Expiry: jwt.NewNumericDate(now.Add(30 * time.Second)), ID: "j-hs2"}, nil)),
			ErrAlgorithm, "invalid_client"},
		{"unknown kid", ccReq(e.assertion(a, assertionOpts{kid: "no-such-key", jti: "j-kid"})), ErrKeyNotBound, "invalid_client"},
		{"signed by another key", ccReq(e.assertion(a, assertionOpts{key: stranger, kid: "-", jti: "j-sig"})), ErrSignature, "invalid_client"},
		{"wrong aud", ccReq(e.assertion(a, assertionOpts{aud: []string{"https://elsewhere"}, jti: "j-aud"})), ErrWrongAudience, "invalid_client"},
		{"wrong iss", ccReq(e.assertion(a, assertionOpts{iss: "ai-agent://prod/other", jti: "j-iss"})), ErrMalformed, "invalid_client"},
		{"expired", ccReq(e.assertion(a, assertionOpts{exp: now.Add(-time.Minute), jti: "j-exp"})), ErrExpired, "invalid_client"},
		{"not yet valid", ccReq(e.assertion(a, assertionOpts{nbf: now.Add(5 * time.Minute), jti: "j-nbf"})), ErrNotYetValid, "invalid_client"},
		{"assertion exp more than 60s ahead", ccReq(e.assertion(a, assertionOpts{exp: now.Add(10 * time.Minute), jti: "j-long"})), ErrLifetime, "invalid_client"},
		{"lifetime over 15 minutes requested", withExpiresIn(ccReq(e.assertion(a, assertionOpts{jti: "j-ttl"})), 901), ErrLifetime, "invalid_request"},
		{"lifetime that overflows a duration", withExpiresIn(ccReq(e.assertion(a, assertionOpts{jti: "j-ovf"})), 18446744074), ErrLifetime, "invalid_request"},
		{"lifetime that overflows negative", withExpiresIn(ccReq(e.assertion(a, assertionOpts{jti: "j-ovf2"})), 9223372037), ErrLifetime, "invalid_request"},
		{"negative lifetime", withExpiresIn(ccReq(e.assertion(a, assertionOpts{jti: "j-neg"})), -5), ErrInvalidRequest, "invalid_request"},
		{"replayed assertion jti", ccReq(used), ErrReplay, "invalid_client"},
		{"malformed agent id", ccReq(e.assertion(a, assertionOpts{iss: "ai-agent://prod//x", sub: "ai-agent://prod//x", jti: "j-id"})), ErrInvalidAgentID, "invalid_client"},
		{"unknown agent", ccReq(e.assertion(a, assertionOpts{iss: "ai-agent://prod/nobody", sub: "ai-agent://prod/nobody", jti: "j-unk"})), ErrUnknownAgent, "invalid_client"},
		{"undeclared trust domain", ccReq(e.assertion(a, assertionOpts{iss: "ai-agent://mars/x", sub: "ai-agent://mars/x", jti: "j-td"})), ErrUnknownDomain, "invalid_client"},
		{"disabled agent", ccReq(e.assertion(off, assertionOpts{jti: "j-off"})), ErrAgentInactive, "invalid_client"},
		{"quarantined agent", ccReq(e.assertion(quar, assertionOpts{jti: "j-quar"})), ErrAgentInactive, "invalid_client"},
		{"garbage assertion", ccReq("not.a.jwt"), ErrMalformed, "invalid_client"},
		{"no assertion", TokenRequest{GrantType: GrantClientCredentials}, ErrInvalidRequest, "invalid_client"},
		{"scope beyond the roles", withScope(ccReq(e.assertion(a, assertionOpts{jti: "j-scope"})), "admin"), ErrInvalidScope, "invalid_scope"},
		{"unknown grant", TokenRequest{GrantType: "password"}, ErrUnsupportedGrant, "unsupported_grant_type"},
		{"DPoP proof with another key", withDPoP(ccReq(e.assertion(a, assertionOpts{jti: "j-dpop"})),
			proof(t, stranger, "POST", testIssuer+"/oauth/token", "", now, "px")), ErrDPoPKeyMismatch, "invalid_dpop_proof"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := countEvents(t, e)
			_, err := e.issuer.Issue(e.ctx, c.req)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			oe := OAuthErrorFor(err)
			if oe.Code != c.oauthCode {
				t.Fatalf("OAuth error %q, want %q (%v)", oe.Code, c.oauthCode, err)
			}
			if strings.Contains(oe.Description, "ai-agent://") || strings.Contains(oe.Description, "kid") {
				t.Fatalf("the response says too much: %q", oe.Description)
			}
			if after := countEvents(t, e); after != before {
				t.Fatalf("a refused request recorded %d events", after-before)
			}
		})
	}
	// Refusals consumed nothing: a valid assertion reusing a refused one's jti still works.
	for _, jti := range []string{"j-aud", "j-exp", "j-ttl", "j-scope", "j-dpop", "j-kid"} {
		if _, err := e.issuer.Issue(e.ctx, ccReq(e.assertion(a, assertionOpts{jti: jti}))); err != nil {
			t.Fatalf("jti %s was consumed by a refused request: %v", jti, err)
		}
	}
}

func ccReq(assertion string) TokenRequest {
	return TokenRequest{GrantType: GrantClientCredentials, ClientAssertionType: AssertionTypeJWTBearer, ClientAssertion: assertion}
}

func withExpiresIn(r TokenRequest, s int64) TokenRequest { r.ExpiresIn = s; return r }
func withScope(r TokenRequest, s string) TokenRequest    { r.Scope = s; return r }
func withDPoP(r TokenRequest, p string) TokenRequest     { r.DPoP = p; return r }

func countEvents(t *testing.T, e *env) int {
	t.Helper()
	evs, err := e.st.Events(e.ctx, store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

func TestRevokedAgentGetsFreshTokensAfterTheRevocationSecond(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://dev/a", []string{"r"}, nil)
	old := e.token(a)
	if _, err := e.reg.RevokeTokens(e.ctx, "admin:test", a.id, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ver.Verify(e.ctx, old.AccessToken); !errors.Is(err, ErrAgentRevoked) {
		t.Fatalf("old token after revoke: %v", err)
	}
	// Issued in the same second as the revocation: the issuer waits past it.
	fresh := e.token(a)
	if _, err := e.ver.Verify(e.ctx, fresh.AccessToken); err != nil {
		t.Fatalf("token issued after the revocation: %v", err)
	}
}

func TestUnavailableStateIsNotTheClientsFault(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://dev/a", []string{"r"}, nil)
	e.view.uncertainSince.Store(e.clock.Now().Add(-time.Minute).UnixNano())
	_, err := e.issuer.Issue(e.ctx, ccReq(e.assertion(a, assertionOpts{})))
	if !errors.Is(err, ErrStateUnavailable) {
		t.Fatalf("stale view: %v", err)
	}
	if oe := OAuthErrorFor(err); oe.Code != "temporarily_unavailable" || oe.Status != 503 {
		t.Fatalf("stale view answered %+v", oe)
	}
}
