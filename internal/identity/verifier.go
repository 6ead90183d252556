package identity

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// DomainPolicy is what the identity layer enforces per trust domain.
type DomainPolicy struct {
	// RequireDPoP refuses the domain's tokens without a proof of possession.
	RequireDPoP bool
}

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Issuer is the only accepted iss.
	Issuer string
	// Audiences lists the accepted aud values; a token must name one of them.
	Audiences []string
	// TrustDomains are the declared trust domains; tokens of others are refused.
	TrustDomains map[string]DomainPolicy
	// ClockSkew is the leeway on exp, nbf and iat.
	ClockSkew time.Duration
	// CacheSize bounds the signature cache. Default 65,536 tokens.
	CacheSize int
	// DPoP configures proof checking; see DPoPConfig for its defaults.
	DPoP DPoPConfig
	Now  func() time.Time
}

// Verifier verifies Warden access tokens for the enforcement points and the
// decision point. The expensive part (parsing and the signature check) is
// cached per token; what can change after signing (expiry, revocation, agent
// status, keys) is checked on every call against the TrustView.
type Verifier struct {
	cfg   VerifierConfig
	view  *TrustView
	now   func() time.Time
	cache *tokenCache
	dpop  *DPoPVerifier
}

// Token is a verified access token. It is shared between callers: read it, do not modify it.
type Token struct {
	Claims
	Agent     AgentID // the subject
	Presenter AgentID // the agent whose key cnf.jkt names
	// Chain lists the delegation actors, current first; empty when not delegated.
	Chain    []AgentID
	Expiry   time.Time
	IssuedAt time.Time
	kid      string
}

// NewVerifier makes a verifier over view.
func NewVerifier(cfg VerifierConfig, view *TrustView) (*Verifier, error) {
	if cfg.Issuer == "" || len(cfg.Audiences) == 0 || len(cfg.TrustDomains) == 0 {
		return nil, errors.New("verifier: Issuer, Audiences and TrustDomains are required")
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 1 << 16
	}
	if cfg.DPoP.Now == nil {
		cfg.DPoP.Now = cfg.Now
	}
	return &Verifier{cfg: cfg, view: view, now: orNow(cfg.Now), cache: newTokenCache(cfg.CacheSize), dpop: NewDPoPVerifier(cfg.DPoP)}, nil
}

// Request is an access token as presented to an enforcement point.
type Request struct {
	Token string
	// DPoP is the proof from the DPoP header, if any.
	DPoP string
	// Method and URL are the HTTP request the proof must name.
	Method string
	URL    string
}

// VerifyRequest verifies the token and, when a proof is given or the trust
// domain requires one, the DPoP proof that binds it to this request.
//
// A token of an agent that is quarantined or disabled is returned with an
// *AgentInactiveError, so that the request can be refused and recorded
// as that agent's: but only once the token is shown unexpired and the
// proof, when one is due, good. Whoever holds a leaked token without the
// key cannot act, or be recorded acting, in the agent's name.
func (v *Verifier) VerifyRequest(ctx context.Context, r Request) (*Token, error) {
	t, err := v.Verify(ctx, r.Token)
	var inactive *AgentInactiveError
	if err != nil {
		if !errors.As(err, &inactive) {
			return nil, err
		}
		if t, err = v.Inspect(r.Token); err != nil {
			return nil, err
		}
		if now := v.now(); !now.Before(t.Expiry.Add(v.cfg.ClockSkew)) {
			return nil, fmt.Errorf("%w: at %s", ErrExpired, t.Expiry.UTC().Format(time.RFC3339))
		}
	}
	if r.DPoP == "" {
		if v.requiresDPoP(t) {
			return nil, fmt.Errorf("%w: trust domain %s", ErrDPoPRequired, t.TrustDomain)
		}
	} else if _, err := v.dpop.Verify(r.DPoP, DPoPCheck{Method: r.Method, URL: r.URL, AccessToken: r.Token, JKT: t.Cnf.JKT}); err != nil {
		return nil, err
	}
	if inactive != nil {
		return t, inactive
	}
	return t, nil
}

// DPoPStats returns the figures of the verifier's DPoP replay memory: how
// full it is and how many proofs it refused, for metrics.
func (v *Verifier) DPoPStats() DPoPStats { return v.dpop.Stats() }

func (v *Verifier) requiresDPoP(t *Token) bool {
	if v.cfg.TrustDomains[t.Agent.TrustDomain()].RequireDPoP || v.cfg.TrustDomains[t.Presenter.TrustDomain()].RequireDPoP {
		return true
	}
	// An agent under a step-up proves possession of its key every time.
	now := v.now()
	return v.view.steppedUp(t.Agent.String(), now) || v.view.steppedUp(t.Presenter.String(), now)
}

// Verify checks an access token: signature and claims (cached), then expiry,
// revocation of the token and of every agent in it, agent status and key
// binding (never cached). Any doubt is a refusal.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Token, error) {
	if err := v.view.Fresh(); err != nil {
		return nil, err
	}
	t := v.cache.get(raw)
	if t == nil {
		var err error
		if t, err = v.parse(raw); err != nil {
			return nil, err
		}
		v.cache.put(raw, t, v.now())
	}
	if err := v.checkLive(t, v.now()); err != nil {
		return nil, err
	}
	return t, nil
}

// Inspect checks a token's signature and fixed claims only, not whether it
// is still live: for revoking a token, which must work on one that is
// already refused for another reason.
func (v *Verifier) Inspect(raw string) (*Token, error) {
	if t := v.cache.get(raw); t != nil {
		return t, nil
	}
	return v.parse(raw)
}

const maxTokenLen = 8 << 10

// parse does the checks whose answer cannot change for a given token.
func (v *Verifier) parse(raw string) (*Token, error) {
	if len(raw) > maxTokenLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, maxTokenLen)
	}
	hdr, err := peekHeader(raw)
	if err != nil {
		return nil, err
	}
	if hdr.Alg != string(jose.EdDSA) {
		return nil, fmt.Errorf("%w: %q (only EdDSA)", ErrAlgorithm, hdr.Alg)
	}
	if !strings.EqualFold(hdr.Typ, "at+jwt") {
		return nil, fmt.Errorf("%w: typ %q, want at+jwt", ErrTokenType, hdr.Typ)
	}
	pub, ok := v.view.issuerKey(hdr.Kid)
	if !ok {
		return nil, fmt.Errorf("%w: kid %q", ErrUnknownKey, hdr.Kid)
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	t := &Token{kid: hdr.Kid}
	if err := tok.Claims(pub, &t.Claims); err != nil {
		return nil, fmt.Errorf("%w", ErrSignature)
	}
	c := &t.Claims
	if subtle.ConstantTimeCompare([]byte(c.Issuer), []byte(v.cfg.Issuer)) != 1 {
		return nil, fmt.Errorf("%w: %q", ErrWrongIssuer, c.Issuer)
	}
	if !slices.ContainsFunc(v.cfg.Audiences, c.Audience.Contains) {
		return nil, fmt.Errorf("%w: %q", ErrWrongAudience, []string(c.Audience))
	}
	if c.Expiry == nil || c.IssuedAt == nil || c.ID == "" || c.Cnf == nil || c.Cnf.JKT == "" {
		return nil, fmt.Errorf("%w: exp, iat, jti and cnf.jkt are required", ErrMissingClaim)
	}
	t.Expiry, t.IssuedAt = c.Expiry.Time(), c.IssuedAt.Time()
	if life := t.Expiry.Sub(t.IssuedAt); life > MaxTokenLifetime {
		return nil, fmt.Errorf("%w: %s", ErrLifetime, life)
	}
	if t.Agent, err = ParseAgentID(c.Subject); err != nil {
		return nil, fmt.Errorf("%w: sub: %w", ErrMalformed, err)
	}
	if c.TrustDomain != t.Agent.TrustDomain() {
		return nil, fmt.Errorf("%w: td %q is not the subject's trust domain", ErrMalformed, c.TrustDomain)
	}
	if _, ok := v.cfg.TrustDomains[c.TrustDomain]; !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownDomain, c.TrustDomain)
	}
	// A task is bound by a delegating agent at token exchange, or by the
	// issuer for an agent that holds a grant for it.
	if c.Task != "" && !ValidTask(c.Task) {
		return nil, fmt.Errorf("%w: task: 1 to 128 of A-Z, a-z, 0-9, '.', '_', ':', '-'", ErrMalformed)
	}
	if d := c.Act.Depth(); d > MaxDelegationDepth {
		return nil, fmt.Errorf("%w: %d links, the limit is %d", ErrChainTooDeep, d, MaxDelegationDepth)
	}
	if len(c.DelegatedFrom) != c.Act.Depth() {
		return nil, fmt.Errorf("%w: delegated_from must list one token per act link", ErrMalformed)
	}
	if (c.OriginIssuedAt != nil) != (c.Act != nil) || c.OriginIssuedAt != nil && c.OriginIssuedAt.Time().After(t.IssuedAt) {
		return nil, fmt.Errorf("%w: origin_iat belongs to delegated tokens and precedes their iat", ErrMalformed)
	}
	for _, s := range c.Act.Chain() {
		id, err := ParseAgentID(s)
		if err != nil {
			return nil, fmt.Errorf("%w: act: %w", ErrMalformed, err)
		}
		if _, ok := v.cfg.TrustDomains[id.TrustDomain()]; !ok {
			return nil, fmt.Errorf("%w: act %q", ErrUnknownDomain, id.TrustDomain())
		}
		t.Chain = append(t.Chain, id)
	}
	t.Presenter = t.Agent
	if len(t.Chain) > 0 {
		t.Presenter = t.Chain[0]
	}
	return t, nil
}

// checkLive does the checks whose answer changes over time.
func (v *Verifier) checkLive(t *Token, now time.Time) error {
	skew := v.cfg.ClockSkew
	if !now.Before(t.Expiry.Add(skew)) {
		return fmt.Errorf("%w: at %s", ErrExpired, t.Expiry.UTC().Format(time.RFC3339))
	}
	if t.NotBefore != nil && t.NotBefore.Time().After(now.Add(skew)) {
		return fmt.Errorf("%w: nbf %s", ErrNotYetValid, t.NotBefore.Time().UTC().Format(time.RFC3339))
	}
	if t.IssuedAt.After(now.Add(skew)) {
		return fmt.Errorf("%w: iat %s", ErrNotYetValid, t.IssuedAt.UTC().Format(time.RFC3339))
	}
	// Agent-wide revocations apply from the chain's first token.
	iat := t.IssuedAt.Unix()
	if t.OriginIssuedAt != nil {
		iat = t.OriginIssuedAt.Time().Unix()
	}

	vw := v.view
	vw.mu.RLock()
	defer vw.mu.RUnlock()
	if k, ok := vw.issuerKeys[t.kid]; !ok || !k.retire.IsZero() && !now.Before(k.retire) {
		return fmt.Errorf("%w: kid %q no longer published", ErrUnknownKey, t.kid)
	}
	if _, ok := vw.revoked[t.ID]; ok {
		return fmt.Errorf("%w: jti %s", ErrTokenRevoked, t.ID)
	}
	for _, from := range t.DelegatedFrom {
		if _, ok := vw.revoked[from]; ok {
			return fmt.Errorf("%w: it was delegated from the revoked token %s", ErrTokenRevoked, from)
		}
	}
	// An inactive agent's token is reported as such (its decision is
	// denied and recorded with that reason), but only once its key
	// binding holds too: a key retired after a theft opens nothing.
	var inactive error
	for _, id := range append([]string{t.Subject}, chainIDs(t.Chain)...) {
		err := checkAgent(vw.agents[id], id, iat)
		var ie *AgentInactiveError
		switch {
		case errors.As(err, &ie):
			if inactive == nil {
				inactive = err
			}
		case err != nil:
			return err
		}
	}
	presenter := vw.agents[t.Presenter.String()]
	if k, ok := presenter.keys[t.Cnf.JKT]; !ok || !k.activeAt(now) {
		return fmt.Errorf("%w: cnf.jkt is not an active key of %s", ErrKeyNotBound, t.Presenter)
	}
	return inactive
}

func chainIDs(chain []AgentID) []string {
	out := make([]string, len(chain))
	for i, id := range chain {
		out[i] = id.String()
	}
	return out
}

func checkAgent(a *agentView, id string, iat int64) error {
	switch {
	case a == nil:
		return fmt.Errorf("%w: %s", ErrUnknownAgent, id)
	case !a.status.MayHoldTokens():
		return &AgentInactiveError{Agent: id, Status: a.status}
	case iat <= a.revokedUpTo:
		return fmt.Errorf("%w: %s", ErrAgentRevoked, id)
	}
	return nil
}

// tokenCache maps a token string to its parsed, signature-checked form.
// Reads take no lock (sync.Map suits a cache written once per token and read
// on every request); writes are counted to keep it bounded.
type tokenCache struct {
	max  int
	m    sync.Map // string -> *Token
	n    atomic.Int64
	trim sync.Mutex
	// swept is when expired tokens were last dropped, in Unix nanoseconds.
	swept atomic.Int64
}

func newTokenCache(max int) *tokenCache { return &tokenCache{max: max} }

func (c *tokenCache) get(raw string) *Token {
	if t, ok := c.m.Load(raw); ok {
		return t.(*Token)
	}
	return nil
}

// tokenSweepEvery is how often the token cache drops expired tokens while
// it is not full: without it, a cache of 65,536 tokens that few agents
// fill (each new token is kept until it would be trimmed) grew for days.
const tokenSweepEvery = 30 * time.Second

func (c *tokenCache) put(raw string, t *Token, now time.Time) {
	if _, loaded := c.m.LoadOrStore(raw, t); loaded {
		return
	}
	full := c.n.Add(1) > int64(c.max)
	due := now.UnixNano()-c.swept.Load() >= int64(tokenSweepEvery)
	switch {
	case full:
		c.trim.Lock()
	case due && c.trim.TryLock(): // one sweep at a time; the others go on
	default:
		return
	}
	defer c.trim.Unlock()
	if c.n.Load() <= int64(c.max) && now.UnixNano()-c.swept.Load() < int64(tokenSweepEvery) {
		return // trimmed or swept meanwhile
	}
	// Drop expired tokens, then, if still full of live ones, an arbitrary
	// eighth (map order is random).
	c.swept.Store(now.UnixNano())
	c.m.Range(func(k, v any) bool {
		if v.(*Token).Expiry.Before(now) {
			c.m.Delete(k)
			c.n.Add(-1)
		}
		return true
	})
	if c.n.Load() <= int64(c.max) {
		return
	}
	c.m.Range(func(k, _ any) bool {
		if c.n.Load() < int64(c.max-c.max/8) {
			return false
		}
		c.m.Delete(k)
		c.n.Add(-1)
		return true
	})
}
