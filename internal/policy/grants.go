package policy

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/warden-run/warden/internal/store"
)

// GrantsPackage is where a bundle says which task grants it gives:
// data.warden.grants.decision, an object {"outcome": "grant" | "approval" |
// "deny", "reasons": [...], "require_approvals": {...}, "max_lifetime":
// "1h"}.
const GrantsPackage = "data.warden.grants"

// Grant outcomes.
const (
	GrantGiven    = "grant"
	GrantApproval = "approval"
	GrantDenied   = "deny"
)

// GrantDecision is the bundle's answer to a grant request.
type GrantDecision struct {
	Outcome string
	Reasons []string
	// Approval is the rule an approval outcome needs.
	Approval *store.ApprovalRule
	// MaxLifetime, when set, shortens the grant to at most this.
	MaxLifetime time.Duration
}

// DecideGrant evaluates the bundle's grant rules on input. A bundle that
// says nothing of grants denies them; a malformed answer is an error.
func (e *Engine) DecideGrant(ctx context.Context, input map[string]any, at time.Time) (GrantDecision, error) {
	value, err := ast.InterfaceToValue(input)
	if err != nil {
		return GrantDecision{}, inputError(err)
	}
	var rs rego.ResultSet
	err = e.bounded(ctx, func(ctx context.Context) (err error) {
		rs, err = e.grants.Eval(ctx, rego.EvalParsedInput(value), rego.EvalTime(at))
		return err
	})
	if err != nil {
		return GrantDecision{}, err
	}
	if len(rs) == 0 {
		return GrantDecision{Outcome: GrantDenied, Reasons: []string{"warden.grants_undefined"}}, nil
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return GrantDecision{}, fmt.Errorf("%w: %s.decision is not one value", ErrMalformedResult, GrantsPackage)
	}
	obj, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return GrantDecision{}, fmt.Errorf("%w: %s.decision is not an object", ErrMalformedResult, GrantsPackage)
	}
	var d GrantDecision
	for k, v := range obj {
		switch k {
		case "outcome":
			s, _ := v.(string)
			if !slices.Contains([]string{GrantGiven, GrantApproval, GrantDenied}, s) {
				return GrantDecision{}, fmt.Errorf("%w: %s.decision.outcome %v: want grant, approval or deny", ErrMalformedResult, GrantsPackage, v)
			}
			d.Outcome = s
		case "reasons":
			list, ok := stringList(v)
			if !ok {
				return GrantDecision{}, fmt.Errorf("%w: %s.decision.reasons is not a list of strings", ErrMalformedResult, GrantsPackage)
			}
			d.Reasons = list
		case "require_approvals":
			rule, ok := ParseApprovalRule(v)
			if !ok {
				return GrantDecision{}, fmt.Errorf("%w: %s.decision.require_approvals is not a rule", ErrMalformedResult, GrantsPackage)
			}
			d.Approval = &rule
		case "max_lifetime":
			s, _ := v.(string)
			dur, err := time.ParseDuration(s)
			if err != nil || dur <= 0 {
				return GrantDecision{}, fmt.Errorf("%w: %s.decision.max_lifetime %v: want a duration", ErrMalformedResult, GrantsPackage, v)
			}
			d.MaxLifetime = dur
		default:
			return GrantDecision{}, fmt.Errorf("%w: %s.decision: unknown key %q", ErrMalformedResult, GrantsPackage, k)
		}
	}
	switch {
	case d.Outcome == "":
		return GrantDecision{}, fmt.Errorf("%w: %s.decision has no outcome", ErrMalformedResult, GrantsPackage)
	case d.Outcome == GrantApproval && d.Approval == nil:
		return GrantDecision{}, fmt.Errorf("%w: %s.decision: an approval outcome needs require_approvals", ErrMalformedResult, GrantsPackage)
	}
	if d.Reasons == nil {
		d.Reasons = []string{}
	}
	return d, nil
}
