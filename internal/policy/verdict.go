package policy

import (
	"encoding/json"
	"errors"
	"math"
	"slices"

	"github.com/warden-run/warden/internal/wire"
)

// Outcome is what a decision tells the enforcement point to do.
type Outcome = wire.Outcome

// Outcomes.
const (
	Allow = wire.Allow
	Deny  = wire.Deny
	// PendingApproval: the policy allows the action once enough people have
	// approved it (obligation require_approvals); until then it must not run.
	PendingApproval = wire.PendingApproval
)

// Reasons Warden gives when the policy itself gave none. Policy reasons
// never start with "warden.".
const (
	ReasonNotAllowed       = "warden.not_allowed"      // allow is false, and no deny reason
	ReasonUndefined        = "warden.policy_undefined" // allow is undefined
	ReasonTimeout          = "warden.policy_timeout"
	ReasonConflict         = "warden.policy_conflict"
	ReasonError            = "warden.policy_error"
	ReasonMalformed        = "warden.policy_malformed_result"
	ReasonApprovalRequired = "warden.approval_required"
	ReasonNoPolicy         = "warden.no_active_policy"
)

// Verdict is a decision's outcome, with its reasons and obligations.
type Verdict struct {
	Outcome     Outcome
	Reasons     []string
	Obligations map[string]any
}

// Judge turns an evaluation into a verdict, deny by default: allow only
// when allow is true, deny is empty and the evaluation did not fail. An
// allow with the obligation require_approvals is pending until the
// approvals in the input meet it. Obligations go with allow and pending
// verdicts only.
func Judge(r Result, err error, approvals []any) Verdict {
	if err != nil {
		return Verdict{Outcome: Deny, Reasons: []string{ReasonForError(err)}}
	}
	switch {
	case len(r.Deny) > 0:
		return Verdict{Outcome: Deny, Reasons: r.Deny}
	case !r.AllowDefined:
		return Verdict{Outcome: Deny, Reasons: []string{ReasonUndefined}}
	case !r.Allow:
		return Verdict{Outcome: Deny, Reasons: []string{ReasonNotAllowed}}
	}
	v := Verdict{Outcome: Allow, Reasons: []string{}, Obligations: r.Obligations}
	if raw, ok := r.Obligations["require_approvals"]; ok {
		rule, ok := approvalRule(raw)
		if !ok {
			return Verdict{Outcome: Deny, Reasons: []string{ReasonMalformed}}
		}
		if rule.count(approvals) < rule.need {
			v.Outcome = PendingApproval
			v.Reasons = []string{ReasonApprovalRequired}
		}
	}
	return v
}

// ReasonForError names the reason of a failed evaluation.
func ReasonForError(err error) string {
	switch {
	case errors.Is(err, ErrTimeout):
		return ReasonTimeout
	case errors.Is(err, ErrConflict):
		return ReasonConflict
	case errors.Is(err, ErrMalformedResult):
		return ReasonMalformed
	}
	return ReasonError
}

// approvals is the obligation require_approvals: {"count": N, "roles":
// [...], "approvers": [...]}; roles and approvers are optional.
type approvals struct {
	need      int
	roles     []string
	approvers []string
}

func approvalRule(raw any) (approvals, bool) {
	m, ok := raw.(map[string]any)
	if !ok {
		return approvals{}, false
	}
	var a approvals
	for k, v := range m {
		switch k {
		case "count":
			n, ok := wholeNumber(v)
			if !ok || n < 1 {
				return a, false
			}
			a.need = n
		case "roles", "approvers":
			list, ok := stringList(v)
			if !ok {
				return a, false
			}
			if k == "roles" {
				a.roles = list
			} else {
				a.approvers = list
			}
		default:
			return a, false // a condition Warden does not know cannot be met
		}
	}
	return a, a.need > 0
}

func stringList(v any) ([]string, bool) {
	list, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, ok := x.(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

func wholeNumber(v any) (int, bool) {
	switch x := v.(type) {
	case json.Number:
		i, err := x.Int64()
		return int(i), err == nil && i <= math.MaxInt32
	case float64:
		return int(x), x == math.Trunc(x) && x <= math.MaxInt32
	case int:
		return x, true
	case int64:
		return int(x), x <= math.MaxInt32
	}
	return 0, false
}

// count counts distinct approvers, in one of the roles and among the
// named approvers when those are given. An approval is {"by": "...",
// "role": "..."}.
func (a approvals) count(given []any) int {
	seen := map[string]bool{}
	for _, x := range given {
		m, ok := x.(map[string]any)
		if !ok {
			continue
		}
		by, _ := m["by"].(string)
		role, _ := m["role"].(string)
		if by == "" || len(a.roles) > 0 && !slices.Contains(a.roles, role) || len(a.approvers) > 0 && !slices.Contains(a.approvers, by) {
			continue
		}
		seen[by] = true
	}
	return len(seen)
}
