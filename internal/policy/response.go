package policy

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// ResponsePackage is the package of a bundle's playbook: its rule
// actions is the set of responses to an agent's rising risk.
const ResponsePackage = "warden.response"

// Response actions, from the mildest: record and alert; step up (short
// tokens, DPoP on every request, authenticate again); keep only a
// restricted agent's permissions; deny every decision and end live
// sessions; revoke every live token; disable the agent.
const (
	ResponseAlert        = "alert"
	ResponseStepUp       = "step_up"
	ResponseRestrict     = "restrict"
	ResponseQuarantine   = "quarantine"
	ResponseRevokeTokens = "revoke_tokens"
	ResponseDisable      = "disable"
)

// ResponseActions lists the actions a playbook may name, mildest first.
var ResponseActions = []string{ResponseAlert, ResponseStepUp, ResponseRestrict, ResponseQuarantine, ResponseRevokeTokens, ResponseDisable}

// MaxResponseExpiry bounds how long a playbook may set a response for
// before it ends by itself.
const MaxResponseExpiry = 30 * 24 * time.Hour

// ResponseAction is one response a playbook asks for.
type ResponseAction struct {
	Action string `json:"action"`
	Reason string `json:"reason,omitempty"`
	// Expires, when not zero, ends the response that long after it was
	// taken; zero leaves it until a person releases the agent.
	Expires time.Duration `json:"expires,omitempty"`
}

// Respond evaluates the bundle's playbook (data.warden.response.actions) on
// input. defined is false when the bundle has none. The actions come
// ordered mildest first; a malformed playbook result is ErrMalformedResult.
func (e *Engine) Respond(ctx context.Context, input map[string]any, at time.Time) (actions []ResponseAction, defined bool, err error) {
	value, err := ast.InterfaceToValue(input)
	if err != nil {
		return nil, false, inputError(err)
	}
	var rs rego.ResultSet
	err = e.bounded(ctx, func(ctx context.Context) (err error) {
		rs, err = e.response.Eval(ctx, rego.EvalParsedInput(value), rego.EvalTime(at))
		return err
	})
	if err != nil {
		return nil, false, err
	}
	if len(rs) == 0 {
		return nil, false, nil // no playbook
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return nil, false, fmt.Errorf("%w: the playbook's result is not one value", ErrMalformedResult)
	}
	actions, err = readActions(rs[0].Expressions[0].Value)
	return actions, true, err
}

func readActions(v any) ([]ResponseAction, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: %s.actions is not a set", ErrMalformedResult, ResponsePackage)
	}
	out := make([]ResponseAction, 0, len(list))
	for _, item := range list {
		obj, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: %s.actions holds %v, not an object", ErrMalformedResult, ResponsePackage, item)
		}
		var a ResponseAction
		for k, v := range obj {
			s, isString := v.(string)
			if !isString {
				return nil, fmt.Errorf("%w: %s.actions: %q is not a string", ErrMalformedResult, ResponsePackage, k)
			}
			switch k {
			case "action":
				a.Action = s
			case "reason":
				a.Reason = s
			case "expires":
				d, err := time.ParseDuration(s)
				if err != nil || d <= 0 || d > MaxResponseExpiry {
					return nil, fmt.Errorf("%w: %s.actions: expires %q: want a duration from 1s to %s", ErrMalformedResult, ResponsePackage, s, MaxResponseExpiry)
				}
				a.Expires = d
			default:
				return nil, fmt.Errorf("%w: %s.actions: unknown key %q (want action, reason, expires)", ErrMalformedResult, ResponsePackage, k)
			}
		}
		if !slices.Contains(ResponseActions, a.Action) {
			return nil, fmt.Errorf("%w: %s.actions: action %q: want one of %v", ErrMalformedResult, ResponsePackage, a.Action, ResponseActions)
		}
		out = append(out, a)
	}
	slices.SortStableFunc(out, func(a, b ResponseAction) int {
		if d := slices.Index(ResponseActions, a.Action) - slices.Index(ResponseActions, b.Action); d != 0 {
			return d
		}
		if a.Reason != b.Reason {
			if a.Reason < b.Reason {
				return -1
			}
			return 1
		}
		return int(a.Expires - b.Expires)
	})
	return out, nil
}
