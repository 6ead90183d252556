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
}

// gate takes a decision the policy holds for approval to the approvals:
// allowed when it used up an approval of exactly its action, pending with
// the request otherwise, denied when the request was rejected or the
// approvals cannot be reached (fail closed).
func (p *Pipeline) gate(ctx context.Context, c *decision, req *Request, args map[string]any, tok *identity.Token, rec store.Agent, res policy.Result, rule store.ApprovalRule) {
	chain := make([]string, len(tok.Chain))
	for i, a := range tok.Chain {
		chain[i] = a.String()
	}
	sub := approvals.Subject{Agent: tok.Subject, Owner: rec.Owner, Delegation: chain, Action: req.Action,
		Resource: store.ApprovalResource{Kind: req.Resource.Kind, ID: req.Resource.ID}, Args: args,
		Audience: audienceOf(c.pep, req, tok), PolicyVersion: c.d.PolicyVersion}
	g, err := p.cfg.Approvals.Gate(ctx, sub, rule, c.d.ID)
	switch {
	case errors.Is(err, approvals.ErrInexactNumber):
		c.deny(ReasonArgsNotCanonical)
		c.d.Obligations = map[string]any{}
		return
	case err != nil:
		p.lg.Warn("decision: the approvals cannot be read; denied", "decision_id", c.d.ID, "err", err)
		c.deny(ReasonStateUnavailable)
		c.d.Obligations = map[string]any{}
		return
	}
	a := g.Approval
	ref := &wire.ApprovalRef{ID: a.ID, Status: string(a.Status), ExpiresAt: a.ExpiresAt.UTC().Format(time.RFC3339),
		Approvals: len(approvals.VotesInput(a.Votes)), Needed: a.Rule.Count}
	c.d.Approval = ref
	detail := map[string]any{"id": a.ID, "status": a.Status, "digest": a.Digest}
	c.detail["approval"] = detail
	switch {
	case g.Consumed:
		// The policy's own verdict with the approvals given: allow.
		v := policy.Judge(res, nil, approvals.VotesInput(a.Votes))
		if v.Outcome != policy.Allow {
			c.deny(policy.ReasonApprovalRequired) // cannot be: Gate checked the rule
			return
		}
		c.d.Outcome, c.d.Reasons = policy.Allow, []string{}
		approvers := make([]string, 0, len(a.Votes))
		for _, v := range a.Votes {
			if v.Approve {
				approvers = append(approvers, v.By)
			}
		}
		detail["approvers"] = approvers
	case a.Status == store.ApprovalRejected:
		c.deny(ReasonApprovalRejected)
		c.d.Obligations = map[string]any{}
	}
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
