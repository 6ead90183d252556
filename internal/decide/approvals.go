package decide

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/warden-run/warden/internal/approvals"
	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
	"github.com/warden-run/warden/internal/wire"
)

// Reasons of decisions held for approval.
const (
	// ReasonApprovalRejected: an approver rejected this exact action; asking
	// again is refused until the rejected request would have expired.
	ReasonApprovalRejected = "warden.approval_rejected"
	// ReasonArgsNotCanonical: a number in the arguments has no exact
	// canonical form, so no approval could say what it approves.
	ReasonArgsNotCanonical = "warden.approval_args_not_canonical"
)

// ApprovalGate is where decisions held for approval go
// (approvals.Service).
type ApprovalGate interface {
	Gate(ctx context.Context, sub approvals.Subject, rule store.ApprovalRule, decisionID string) (approvals.Gated, error)
	Consume(ctx context.Context, id, decisionID string) (store.Approval, error)
}

// gate takes a decision the policy holds for approval to the approvals.
// When a request for exactly this action is approved as the rule asks,
// the policy decides again, seeing the approvals (context.approvals): an
// allow then uses the request up, once, and runs. Otherwise the decision
// is pending with the request, or denied when the request was rejected or
// the approvals cannot be read (fail closed). It returns the input the
// decision was made on.
func (p *Pipeline) gate(ctx context.Context, c *decision, req *Request, args map[string]any, tok *identity.Token, rec store.Agent, input map[string]any, at time.Time, rule store.ApprovalRule) map[string]any {
	chain := make([]string, len(tok.Chain))
	for i, a := range tok.Chain {
		chain[i] = a.String()
	}
	sub := approvals.Subject{Agent: tok.Subject, Owner: rec.Owner, Delegation: chain, Action: req.Action,
		Resource: store.ApprovalResource{Kind: req.Resource.Kind, ID: req.Resource.ID}, Args: args,
		Audience: audienceOf(c.pep, req, tok), PolicyVersion: c.d.PolicyVersion}
	failed := func(reason string, err error) map[string]any {
		if err != nil {
			p.lg.Warn("decision: the approvals cannot be read; denied", "decision_id", c.d.ID, "err", err)
		}
		c.deny(reason)
		c.d.Obligations = map[string]any{}
		return input
	}
	g, err := p.cfg.Approvals.Gate(ctx, sub, rule, c.d.ID)
	switch {
	case errors.Is(err, approvals.ErrInexactNumber):
		return failed(ReasonArgsNotCanonical, nil)
	case err != nil:
		return failed(ReasonStateUnavailable, err)
	}
	a := g.Approval
	c.d.Approval = ref(a)
	detail := map[string]any{"id": a.ID, "status": a.Status, "digest": a.Digest}
	c.detail["approval"] = detail
	switch {
	case a.Status == store.ApprovalRejected:
		return failed(ReasonApprovalRejected, nil)
	case !g.Ready:
		return input // pending
	}
	// Decided again, on what the approvers said.
	given := approvals.VotesInput(a.Votes, rule)
	withApprovals := withContext(input, "approvals", given)
	_, ok := p.judge(ctx, c, withApprovals, at, given)
	if !ok || c.d.Outcome != policy.Allow {
		if ok && c.d.Outcome == policy.PendingApproval {
			c.d.Approval = ref(a) // the rule now asks for more than was given
		}
		return withApprovals
	}
	used, err := p.cfg.Approvals.Consume(ctx, a.ID, c.d.ID)
	switch {
	case errors.Is(err, approvals.ErrUsed):
		// Another call used it first: this one waits for a new request.
		c.d.Outcome, c.d.Reasons = policy.PendingApproval, []string{policy.ReasonApprovalRequired}
		detail["status"] = "used_by_another_decision"
		return withApprovals
	case err != nil:
		return failed(ReasonStateUnavailable, err)
	}
	c.d.Approval = ref(used)
	detail["status"] = used.Status
	approvers := make([]string, 0, len(used.Votes))
	for _, v := range used.Votes {
		if v.Approve {
			approvers = append(approvers, v.By)
		}
	}
	detail["approvers"] = approvers
	return withApprovals
}

func ref(a store.Approval) *wire.ApprovalRef {
	return &wire.ApprovalRef{ID: a.ID, Status: string(a.Status), ExpiresAt: a.ExpiresAt.UTC().Format(time.RFC3339),
		Approvals: len(approvals.VotesInput(a.Votes, a.Rule)), Needed: a.Rule.Count}
}

// withContext is input with context[key] set, the rest shared.
func withContext(input map[string]any, key string, v any) map[string]any {
	out := make(map[string]any, len(input))
	for k, x := range input {
		out[k] = x
	}
	cx := map[string]any{}
	if old, ok := input["context"].(map[string]any); ok {
		for k, x := range old {
			cx[k] = x
		}
	}
	cx[key] = v
	out["context"] = cx
	return out
}

// audienceOf is the audience a request runs at: the one it names, or the
// enforcement point's that the token was issued for.
func audienceOf(pt Point, req *Request, tok *identity.Token) string {
	if req.Audience != "" {
		return req.Audience
	}
	if i := slices.IndexFunc(pt.Audiences, tok.Audience.Contains); i >= 0 {
		return pt.Audiences[i]
	}
	return strings.Join(tok.Audience, " ")
}
