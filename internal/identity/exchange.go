package identity

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/warden-run/warden/internal/store"
)

// errSubjectToken marks a subject or actor token that does not verify; the
// token endpoint answers invalid_grant.
var errSubjectToken = errors.New("subject or actor token invalid")

// RoleDelegator lets an agent delegate to any agent of its own trust domain.
// The attribute AttrDelegateTo lists, comma-separated, the agent ids or id
// prefixes ("ai-agent://prod/finance/*") an agent may delegate to, in any domain.
const (
	RoleDelegator  = "delegator"
	AttrDelegateTo = "delegate_to"
)

// exchange implements RFC 8693 delegation. The caller authenticates with
// its own client assertion and must be the current holder of the subject
// token (its subject, or its current actor): only the holder can hand a token
// on, so a token that leaked cannot be rebound to another key. It names the
// delegate, which becomes the new actor, by agent id in audience. An
// actor_token is refused: naming the delegate by one of its tokens would mean
// the delegate handing its token to the holder. The new token keeps the
// subject, adds the delegate at the head of the act chain, is bound to the
// delegate's newest key, carries only the roles both the subject token and
// the delegate have, never outlives the subject token, and dies with any
// token it was exchanged from. The delegating agent may bind the new token
// to a task (task): the scope of the taints the delegate's reads under it
// set; a token bound to a task stays bound to it down the chain.
func (i *TokenIssuer) exchange(ctx context.Context, req TokenRequest) (*IssuedToken, error) {
	if req.SubjectToken == "" {
		return nil, fmt.Errorf("%w: subject_token is required", ErrInvalidRequest)
	}
	if req.SubjectTokenType != TokenTypeAccessToken && req.SubjectTokenType != TokenTypeJWT {
		return nil, fmt.Errorf("%w: subject_token_type must be %s", ErrInvalidRequest, TokenTypeAccessToken)
	}
	if req.RequestedTokenType != "" && req.RequestedTokenType != TokenTypeAccessToken {
		return nil, fmt.Errorf("%w: only %s can be issued", ErrInvalidRequest, TokenTypeAccessToken)
	}
	if req.ActorToken != "" || req.ActorTokenType != "" {
		return nil, fmt.Errorf("%w: actor_token is not accepted; name the delegate agent in audience", ErrInvalidRequest)
	}
	if req.Audience == "" {
		return nil, fmt.Errorf("%w: name the delegate agent in audience", ErrInvalidRequest)
	}
	if req.DPoP != "" {
		// The new token is bound to the delegate's key, not the caller's.
		return nil, fmt.Errorf("%w: a DPoP proof cannot bind a token issued to another agent", ErrInvalidRequest)
	}
	if req.Task != "" && !ValidTask(req.Task) {
		return nil, fmt.Errorf("%w: task: 1 to 128 of A-Z, a-z, 0-9, '.', '_', ':', '-'", ErrInvalidRequest)
	}
	ttl, err := i.lifetime(req)
	if err != nil {
		return nil, err
	}
	aud, err := i.audience(req.Resource)
	if err != nil {
		return nil, err
	}
	caller, err := i.authenticate(ctx, req)
	if err != nil {
		return nil, err
	}
	subject, err := i.verifier.Verify(ctx, req.SubjectToken)
	if err != nil {
		return nil, fmt.Errorf("%w: subject token: %w", errSubjectToken, err)
	}
	if subject.Presenter != caller.id {
		return nil, fmt.Errorf("%w: only the token's holder may delegate it; the caller is not", ErrDelegationDenied)
	}
	did, err := ParseAgentID(req.Audience)
	if err != nil {
		return nil, fmt.Errorf("%w: audience: %w", ErrInvalidRequest, err)
	}
	delegate, err := i.activeAgent(ctx, did)
	if err != nil {
		return nil, err
	}
	if !mayDelegate(caller.agent, did) {
		return nil, fmt.Errorf("%w: %s may not delegate to %s (needs role %q for its own domain or attribute %q)",
			ErrDelegationDenied, caller.id, did, RoleDelegator, AttrDelegateTo)
	}
	if did == subject.Agent || slices.Contains(subject.Chain, did) {
		return nil, fmt.Errorf("%w: %s is already in the delegation chain", ErrDelegationDenied, did)
	}
	task := subject.Task
	switch {
	case task == "":
		task = req.Task
	case req.Task != "" && req.Task != task:
		return nil, fmt.Errorf("%w: the subject token is bound to task %q, and a token delegated from it stays bound to it", ErrDelegationDenied, task)
	}
	if depth := subject.Act.Depth() + 1; depth > MaxDelegationDepth {
		return nil, fmt.Errorf("%w: %d links, the limit is %d", ErrChainTooDeep, depth, MaxDelegationDepth)
	}
	roles := intersect(subject.Roles, delegate.Roles)
	if len(roles) == 0 {
		return nil, fmt.Errorf("%w: %s holds none of the token's roles", ErrDelegationDenied, did)
	}
	if roles, err = narrowRoles(roles, req.Scope, ErrDelegationWidens); err != nil {
		return nil, err
	}
	jkt := newestKey(delegate, i.now())
	if jkt == "" {
		return nil, fmt.Errorf("%w: %s has no active key", ErrDelegationDenied, did)
	}
	if err := i.consume(ctx, caller); err != nil {
		return nil, err
	}
	if err := i.waitPastRevocation(ctx, delegate, caller.agent); err != nil {
		return nil, err
	}
	now := i.now()
	if SteppedUp(delegate, now) || SteppedUp(caller.agent, now) {
		ttl = min(ttl, StepUpTokenTTL)
	}
	exp := now.Add(ttl)
	if subject.Expiry.Before(exp) {
		exp = subject.Expiry
	}
	act := &Actor{Subject: did.String(), Act: subject.Act}
	cl := i.claims(subject.Subject, did.String(), jkt, roles, act, aud, now, exp)
	cl.DelegatedFrom = append([]string{subject.ID}, subject.DelegatedFrom...)
	cl.Task = task
	cl.OriginIssuedAt = subject.OriginIssuedAt
	if cl.OriginIssuedAt == nil {
		cl.OriginIssuedAt = subject.Claims.IssuedAt
	}
	tok, err := i.sign(cl)
	if err != nil {
		return nil, err
	}
	if err := i.recordIssued(ctx, ActionTokenExchange, req, cl, "Bearer"); err != nil {
		return nil, err
	}
	return &IssuedToken{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int64(exp.Sub(now).Round(time.Second) / time.Second),
		Scope: strings.Join(roles, " "), IssuedTokenType: TokenTypeAccessToken,
		Subject: cl.Subject, JTI: cl.ID, Chain: act.Chain()}, nil
}

// activeAgent looks up an agent that must exist and may hold tokens.
func (i *TokenIssuer) activeAgent(ctx context.Context, id AgentID) (store.Agent, error) {
	av, err := i.verifier.view.lookupAgent(ctx, id.String())
	if errors.Is(err, ErrUnknownAgent) {
		return store.Agent{}, fmt.Errorf("%w: %w", ErrDelegationDenied, err)
	}
	if err != nil {
		return store.Agent{}, err
	}
	if !av.status.MayHoldTokens() {
		return store.Agent{}, fmt.Errorf("%w: %w: %s is %s", ErrDelegationDenied, ErrAgentInactive, id, av.status)
	}
	return av.rec, nil
}

// mayDelegate reports whether from's record allows handing its tokens to to.
func mayDelegate(from store.Agent, to AgentID) bool {
	for _, p := range delegatePatterns(from.Attributes[AttrDelegateTo]) {
		if MatchAgentPattern(p, to) {
			return true
		}
	}
	return slices.Contains(from.Roles, RoleDelegator) && from.TrustDomain == to.TrustDomain()
}

func delegatePatterns(attr string) []string {
	return strings.FieldsFunc(attr, func(r rune) bool { return r == ',' || r == ' ' })
}

func newestKey(a store.Agent, now time.Time) string {
	for _, k := range slices.Backward(a.Keys) {
		if k.ActiveAt(now) {
			return k.KID
		}
	}
	return ""
}

func intersect(a, b []string) []string {
	out := []string{}
	for _, r := range a {
		if slices.Contains(b, r) {
			out = append(out, r)
		}
	}
	return out
}
