package policy

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
)

// Outcome is what a decision tells the enforcement point to do.
type Outcome string

// Outcomes.
const (
	Allow Outcome = "allow"
	Deny  Outcome = "deny"
	// PendingApproval: the policy allows the action once enough people have
	// approved it (obligation require_approvals); until then it must not run.
	PendingApproval Outcome = "pending_approval"
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
		need, roles, ok := approvalRule(raw)
		if !ok {
			return Verdict{Outcome: Deny, Reasons: []string{ReasonMalformed}}
		}
		if countApprovals(approvals, roles) < need {
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

// approvalRule reads {"count": N, "roles": [...]}; roles may be absent.
func approvalRule(raw any) (int, []string, bool) {
	m, ok := raw.(map[string]any)
	if !ok {
		return 0, nil, false
	}
	n, ok := wholeNumber(m["count"])
	if !ok || n < 1 {
		return 0, nil, false
	}
	var roles []string
	if rs, present := m["roles"]; present {
		list, ok := rs.([]any)
		if !ok {
			return 0, nil, false
		}
		for _, r := range list {
			s, ok := r.(string)
			if !ok {
				return 0, nil, false
			}
			roles = append(roles, s)
		}
	}
	return n, roles, true
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

// countApprovals counts distinct approvers, in one of roles when roles are
// named. An approval is {"by": "...", "role": "..."}.
func countApprovals(approvals []any, roles []string) int {
	seen := map[string]bool{}
	for _, a := range approvals {
		m, ok := a.(map[string]any)
		if !ok {
			continue
		}
		by, _ := m["by"].(string)
		role, _ := m["role"].(string)
		if by == "" || len(roles) > 0 && !slices.Contains(roles, role) {
			continue
		}
		seen[by] = true
	}
	return len(seen)
}
