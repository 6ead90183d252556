package policy

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"time"

	"github.com/warden-run/warden/internal/store"
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
	// Approval is the require_approvals rule, when the policy set one.
	Approval *store.ApprovalRule
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
		rule, ok := ParseApprovalRule(raw)
		if !ok {
			return Verdict{Outcome: Deny, Reasons: []string{ReasonMalformed}}
		}
		v.Approval = &rule
		if !ApprovalsMet(rule, approvals) {
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

// Bounds and default of an approval request's lifetime
// (require_approvals.expires).
const (
	DefaultApprovalTTL = time.Hour
	MinApprovalTTL     = time.Minute
	MaxApprovalTTL     = 7 * 24 * time.Hour
)

// ParseApprovalRule reads the obligation require_approvals: {"count": N,
// "roles": [...], "approvers": [...], "humans": H, "agents": A,
// "exclude_owner": bool, "rejections": R, "expires": seconds or "30m"};
// only count is required. Anything else, or a value of the wrong kind, is
// not a rule (ok false): a condition Warden does not know cannot be met.
func ParseApprovalRule(raw any) (store.ApprovalRule, bool) {
	m, ok := raw.(map[string]any)
	if !ok {
		return store.ApprovalRule{}, false
	}
	a := store.ApprovalRule{Rejections: 1, TTL: DefaultApprovalTTL}
	for k, v := range m {
		switch k {
		case "count", "humans", "agents", "rejections":
			n, ok := wholeNumber(v)
			if !ok || n < 0 || (k != "humans" && k != "agents" && n < 1) {
				return a, false
			}
			switch k {
			case "count":
				a.Count = n
			case "humans":
				a.Humans = n
			case "agents":
				a.Agents = n
			default:
				a.Rejections = n
			}
		case "roles", "approvers":
			list, ok := stringList(v)
			if !ok {
				return a, false
			}
			if k == "roles" {
				a.Roles = list
			} else {
				a.Approvers = list
			}
		case "exclude_owner":
			b, ok := v.(bool)
			if !ok {
				return a, false
			}
			a.ExcludeOwner = b
		case "expires":
			d, ok := approvalTTL(v)
			if !ok {
				return a, false
			}
			a.TTL = d
		default:
			return a, false
		}
	}
	return a, a.Count > 0 && a.Humans+a.Agents <= a.Count
}

// approvalTTL reads expires: whole seconds, or a duration such as "30m",
// within MinApprovalTTL and MaxApprovalTTL.
func approvalTTL(v any) (time.Duration, bool) {
	var d time.Duration
	if s, ok := v.(string); ok {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, false
		}
	} else {
		n, ok := wholeNumber(v)
		if !ok {
			return 0, false
		}
		d = time.Duration(n) * time.Second
	}
	return d, d >= MinApprovalTTL && d <= MaxApprovalTTL
}

// ApprovalsMet reports whether the approvals given (context.approvals:
// {"by": "...", "kind": "human"|"agent", "roles": [...]}, or "role": "..."
// for one role) meet rule: distinct approvers, each in one of its roles and
// among its approvers when those are given, enough of them, and enough
// humans and agents among them.
func ApprovalsMet(rule store.ApprovalRule, given []any) bool {
	kinds := map[string]string{}
	for _, x := range given {
		m, ok := x.(map[string]any)
		if !ok {
			continue
		}
		by, _ := m["by"].(string)
		if by == "" || len(rule.Approvers) > 0 && !slices.Contains(rule.Approvers, by) {
			continue
		}
		roles, _ := stringList(m["roles"])
		if r, ok := m["role"].(string); ok {
			roles = append(roles, r)
		}
		if len(rule.Roles) > 0 && !slices.ContainsFunc(roles, func(r string) bool { return slices.Contains(rule.Roles, r) }) {
			continue
		}
		kind, _ := m["kind"].(string)
		kinds[by] = kind
	}
	humans, agents := 0, 0
	for _, k := range kinds {
		switch k {
		case store.ApproverHuman:
			humans++
		case store.ApproverAgent:
			agents++
		}
	}
	return len(kinds) >= rule.Count && humans >= rule.Humans && agents >= rule.Agents
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
