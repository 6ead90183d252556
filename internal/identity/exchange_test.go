package identity

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/store"
)

// exchange has caller, the holder of subjectToken, hand it to the agent named in audience.
func (e *env) exchange(caller testAgent, subjectToken, audience, scope string) (*IssuedToken, error) {
	return e.issuer.Issue(e.ctx, TokenRequest{
		GrantType: GrantTokenExchange, ClientAssertionType: AssertionTypeJWTBearer,
		ClientAssertion: e.assertion(caller, assertionOpts{}),
		SubjectToken:    subjectToken, SubjectTokenType: TokenTypeAccessToken,
		Audience: audience, Scope: scope,
	})
}

func TestExchangeDelegates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://dev/planner", []string{"reader", "trader", "writer"}, map[string]string{AttrDelegateTo: "ai-agent://dev/tools/*"})
	b := e.register("ai-agent://dev/tools/quotes", []string{"reader", "trader", "delegator"}, nil)
	c := e.register("ai-agent://dev/tools/fetch", []string{"reader"}, nil)
	at := e.token(a)

	// A hands its token to B.
	ab, err := e.exchange(a, at.AccessToken, b.id, "")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := e.ver.Verify(e.ctx, ab.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Subject != a.id || tok.Presenter.String() != b.id || tok.Cnf.JKT != b.kid || tok.ClientID != b.id ||
		!slices.Equal(tok.Roles, []string{"reader", "trader"}) || ab.IssuedTokenType != TokenTypeAccessToken ||
		!slices.Equal(tok.DelegatedFrom, []string{at.JTI}) {
		t.Fatalf("A->B token: %+v", tok.Claims)
	}
	// B, a delegator, hands it on to C.
	bc, err := e.exchange(b, ab.AccessToken, c.id, "")
	if err != nil {
		t.Fatal(err)
	}
	tok, err = e.ver.Verify(e.ctx, bc.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Subject != a.id || !slices.Equal(tok.Act.Chain(), []string{c.id, b.id}) || tok.Cnf.JKT != c.kid ||
		!slices.Equal(tok.Roles, []string{"reader"}) || !slices.Equal(tok.DelegatedFrom, []string{ab.JTI, at.JTI}) {
		t.Fatalf("A->B->C token: %+v chain %v", tok.Claims, tok.Act.Chain())
	}
	sub, _ := e.ver.Verify(e.ctx, at.AccessToken)
	if tok.Expiry.After(sub.Expiry) {
		t.Fatal("a delegated token outlives its subject token")
	}
	// Quarantining B kills the token C holds through B.
	if _, err := e.reg.SetStatus(e.ctx, "admin:test", b.id, store.StatusQuarantined, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ver.Verify(e.ctx, bc.AccessToken); !errors.Is(err, ErrAgentInactive) {
		t.Fatalf("chain through a quarantined agent: %v", err)
	}
}

func TestRevokingATokenRevokesWhatWasDelegatedFromIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://dev/a", []string{"reader", "delegator"}, nil)
	b := e.register("ai-agent://dev/b", []string{"reader"}, nil)
	at := e.token(a)
	ab, err := e.exchange(a, at.AccessToken, b.id, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.reg.RevokeToken(e.ctx, "admin:test", at.JTI, a.id, time.Time{}, "leak"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ver.Verify(e.ctx, ab.AccessToken); !errors.Is(err, ErrTokenRevoked) {
		t.Fatalf("token delegated from a revoked one: %v", err)
	}
}

func TestAgentRevocationReachesTokensDelegatedLater(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://dev/a", []string{"reader", "delegator"}, nil)
	b := e.register("ai-agent://dev/b", []string{"reader"}, nil)
	at := e.token(a)
	if _, err := e.reg.RevokeTokens(e.ctx, "admin:test", a.id, "leak"); err != nil {
		t.Fatal(err)
	}
	// What a replica that had not heard of the revocation would have minted
	// seconds later from A's old token: its own iat is after the revocation.
	e.clock.Advance(5 * time.Second)
	sub, _ := e.ver.Inspect(at.AccessToken)
	now := e.clock.Now()
	c := e.issuer.claims(a.id, b.id, b.kid, []string{"reader"}, &Actor{Subject: b.id}, e.issuer.cfg.Audience, now, now.Add(time.Minute))
	c.DelegatedFrom = []string{sub.ID}
	c.OriginIssuedAt = sub.Claims.IssuedAt
	if _, err := e.ver.Verify(e.ctx, e.forge(t, c, "at+jwt")); !errors.Is(err, ErrAgentRevoked) {
		t.Fatalf("a token delegated after the revocation from a revoked one: %v", err)
	}
	// Without origin_iat the same token is malformed, not accepted.
	c.OriginIssuedAt = nil
	if _, err := e.ver.Verify(e.ctx, e.forge(t, c, "at+jwt")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a delegated token without origin_iat: %v", err)
	}
}

func TestExchangeRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://dev/a", []string{"reader", "delegator"}, nil)
	b := e.register("ai-agent://dev/b", []string{"reader", "writer", "delegator"}, nil)
	plain := e.register("ai-agent://dev/plain", []string{"reader"}, nil)
	other := e.register("ai-agent://partner/x", []string{"reader"}, nil)
	writer := e.register("ai-agent://dev/writer", []string{"writer"}, nil)
	off := e.register("ai-agent://dev/off", []string{"reader"}, nil)
	if _, err := e.reg.SetStatus(e.ctx, "admin:test", off.id, store.StatusDisabled, ""); err != nil {
		t.Fatal(err)
	}
	at := e.token(a)
	pt := e.token(plain)
	revoked := e.token(b)
	if err := e.reg.RevokeToken(e.ctx, "admin:test", revoked.JTI, b.id, time.Time{}, ""); err != nil {
		t.Fatal(err)
	}

	// A chain of five delegations: the longest allowed.
	chain := make([]testAgent, 6)
	for i := range chain {
		chain[i] = e.register(fmt.Sprintf("ai-agent://dev/chain/%d", i), []string{"reader", "delegator"}, nil)
	}
	tok := e.token(chain[0]).AccessToken
	for i := 1; i < len(chain); i++ {
		it, err := e.exchange(chain[i-1], tok, chain[i].id, "")
		if err != nil {
			t.Fatalf("link %d: %v", i, err)
		}
		tok = it.AccessToken
	}
	sixth := e.register("ai-agent://dev/chain/6", []string{"reader"}, nil)

	cases := []struct {
		name      string
		run       func() (*IssuedToken, error)
		want      error
		oauthCode string
	}{
		{"holder may not delegate", func() (*IssuedToken, error) { return e.exchange(plain, pt.AccessToken, b.id, "") }, ErrDelegationDenied, "invalid_grant"},
		{"a delegate cannot take a token it was not given", func() (*IssuedToken, error) { return e.exchange(b, at.AccessToken, b.id, "") }, ErrDelegationDenied, "invalid_grant"},
		{"delegator role stays in its trust domain", func() (*IssuedToken, error) { return e.exchange(a, at.AccessToken, other.id, "") }, ErrDelegationDenied, "invalid_grant"},
		{"delegation widening privileges", func() (*IssuedToken, error) { return e.exchange(a, at.AccessToken, b.id, "reader writer") }, ErrDelegationWidens, "invalid_scope"},
		{"no role in common", func() (*IssuedToken, error) { return e.exchange(a, at.AccessToken, writer.id, "") }, ErrDelegationDenied, "invalid_grant"},
		{"chain deeper than 5", func() (*IssuedToken, error) { return e.exchange(chain[5], tok, sixth.id, "") }, ErrChainTooDeep, "invalid_grant"},
		{"delegate already in the chain", func() (*IssuedToken, error) { return e.exchange(chain[5], tok, chain[2].id, "") }, ErrDelegationDenied, "invalid_grant"},
		{"delegate disabled", func() (*IssuedToken, error) { return e.exchange(a, at.AccessToken, off.id, "") }, ErrAgentInactive, "invalid_grant"},
		{"delegate unknown", func() (*IssuedToken, error) { return e.exchange(a, at.AccessToken, "ai-agent://dev/ghost", "") }, ErrUnknownAgent, "invalid_grant"},
		{"delegate malformed", func() (*IssuedToken, error) { return e.exchange(a, at.AccessToken, "ai-agent://dev/Bad", "") }, ErrInvalidAgentID, "invalid_request"},
		{"no delegate named", func() (*IssuedToken, error) { return e.exchange(a, at.AccessToken, "", "") }, ErrInvalidRequest, "invalid_request"},
		{"revoked subject token", func() (*IssuedToken, error) { return e.exchange(b, revoked.AccessToken, a.id, "") }, ErrTokenRevoked, "invalid_grant"},
		{"garbage subject token", func() (*IssuedToken, error) { return e.exchange(a, "x.y.z", b.id, "") }, ErrMalformed, "invalid_grant"},
		{"actor token instead of audience", func() (*IssuedToken, error) {
			return e.issuer.Issue(e.ctx, TokenRequest{GrantType: GrantTokenExchange, ClientAssertionType: AssertionTypeJWTBearer,
				ClientAssertion: e.assertion(a, assertionOpts{}), SubjectToken: at.AccessToken, SubjectTokenType: TokenTypeAccessToken,
				ActorToken: e.token(b).AccessToken, ActorTokenType: TokenTypeAccessToken})
		}, ErrInvalidRequest, "invalid_request"},
		{"DPoP proof of the holder", func() (*IssuedToken, error) {
			return e.issuer.Issue(e.ctx, TokenRequest{GrantType: GrantTokenExchange, ClientAssertionType: AssertionTypeJWTBearer,
				ClientAssertion: e.assertion(a, assertionOpts{}), SubjectToken: at.AccessToken, SubjectTokenType: TokenTypeAccessToken,
				Audience: b.id, DPoP: proof(t, a.priv, "POST", testIssuer+"/oauth/token", "", e.clock.Now(), "x")})
		}, ErrInvalidRequest, "invalid_request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := countEvents(t, e)
			_, err := c.run()
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if oe := OAuthErrorFor(err); oe.Code != c.oauthCode {
				t.Fatalf("OAuth error %q, want %q (%v)", oe.Code, c.oauthCode, err)
			}
			if after := countEvents(t, e); after != before {
				t.Fatal("a refused exchange recorded an event")
			}
		})
	}
}
