package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Case is a decision fixture from cases/*.yaml: a policy input and the
// verdict it must get. A file holds a list of cases:
//
//   - name: a trader reads a quote in market hours
//     input: {agent: {...}, action: tools/call, resource: {...}, context: {...}}
//     outcome: allow
//     reasons: []            # optional: the exact set of reasons
//     obligations: {}        # optional: the exact obligations
type Case struct {
	File    string
	Name    string
	Input   map[string]any
	Outcome Outcome
	// Reasons and Obligations are checked only when the case gives them.
	Reasons     []string
	Obligations map[string]any
	hasReasons  bool
	hasObl      bool
}

// CaseResult is how a case went.
type CaseResult struct {
	File        string         `json:"file"`
	Name        string         `json:"name"`
	Pass        bool           `json:"pass"`
	Outcome     Outcome        `json:"outcome"`
	Reasons     []string       `json:"reasons"`
	Obligations map[string]any `json:"obligations,omitempty"`
	// Problem says what differs from the expectation.
	Problem string `json:"problem,omitempty"`
}

// LoadCases parses the bundle's decision cases, in file order.
func LoadCases(b *Bundle) ([]Case, error) {
	var out []Case
	for _, p := range b.Paths() {
		if kindOf(p) != fileCases {
			continue
		}
		doc, err := decodeYAML(b.Files[p])
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalidBundle, p, err)
		}
		if doc == nil {
			continue
		}
		list, ok := doc.([]any)
		if !ok {
			return nil, fmt.Errorf("%w: %s: want a list of cases", ErrInvalidBundle, p)
		}
		names := map[string]bool{}
		for i, item := range list {
			c, err := parseCase(p, item)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: case %d: %v", ErrInvalidBundle, p, i+1, err)
			}
			if names[c.Name] {
				return nil, fmt.Errorf("%w: %s: two cases are named %q", ErrInvalidBundle, p, c.Name)
			}
			names[c.Name] = true
			out = append(out, c)
		}
	}
	return out, nil
}

func parseCase(file string, item any) (Case, error) {
	m, ok := item.(map[string]any)
	if !ok {
		return Case{}, fmt.Errorf("want an object with name, input and outcome")
	}
	c := Case{File: file}
	for k, v := range m {
		switch k {
		case "name":
			c.Name, ok = v.(string)
			if !ok || c.Name == "" {
				return c, fmt.Errorf("name must be a non-empty string")
			}
		case "input":
			c.Input, ok = v.(map[string]any)
			if !ok {
				return c, fmt.Errorf("input must be an object")
			}
		case "outcome":
			s, _ := v.(string)
			c.Outcome = Outcome(s)
			if c.Outcome != Allow && c.Outcome != Deny && c.Outcome != PendingApproval {
				return c, fmt.Errorf("outcome %v: want allow, deny or pending_approval", v)
			}
		case "reasons":
			list, ok := v.([]any)
			if !ok && v != nil {
				return c, fmt.Errorf("reasons must be a list of strings")
			}
			c.Reasons, c.hasReasons = []string{}, true
			for _, r := range list {
				s, ok := r.(string)
				if !ok {
					return c, fmt.Errorf("reasons must be a list of strings")
				}
				c.Reasons = append(c.Reasons, s)
			}
		case "obligations":
			c.Obligations, ok = v.(map[string]any)
			if !ok && v != nil {
				return c, fmt.Errorf("obligations must be an object")
			}
			if c.Obligations == nil {
				c.Obligations = map[string]any{}
			}
			c.hasObl = true
		default:
			return c, fmt.Errorf("unknown key %q (want name, input, outcome, reasons, obligations)", k)
		}
	}
	switch {
	case c.Name == "":
		return c, fmt.Errorf("name is required")
	case c.Input == nil:
		return c, fmt.Errorf("%s: input is required", c.Name)
	case c.Outcome == "":
		return c, fmt.Errorf("%s: outcome is required", c.Name)
	}
	return c, nil
}

// caseTries is how many times a case is evaluated when it times out.
const caseTries = 3

// Run decides the case's input on e as a live decision would be decided:
// the resource's attributes from the catalog, the clock at
// input.context.time (the Unix epoch when the input has no valid time).
// An evaluation that times out is tried again, up to caseTries in all.
func (c Case) Run(ctx context.Context, e *Engine) CaseResult {
	input := cloneJSON(c.Input).(map[string]any)
	if r, ok := input["resource"].(map[string]any); ok {
		kind, _ := r["kind"].(string)
		id, _ := r["id"].(string)
		sent, _ := r["attributes"].(map[string]any)
		r["attributes"] = e.Resources().Enrich(kind, id, sent)
	}
	// Without a time in the input the clock is the Unix epoch: a case
	// gives the same verdict whenever it runs.
	at := time.Unix(0, 0).UTC()
	var approvals []any
	if cx, ok := input["context"].(map[string]any); ok {
		if s, ok := cx["time"].(string); ok {
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
				at = t
			}
		}
		approvals, _ = cx["approvals"].([]any)
	}
	res, err := e.Evaluate(ctx, input, at)
	for try := 1; errors.Is(err, ErrTimeout) && try < caseTries && ctx.Err() == nil; try++ {
		// A busy machine, not the bundle, can make one evaluation miss its
		// deadline; a policy that is too slow misses it every time.
		res, err = e.Evaluate(ctx, input, at)
	}
	v := Judge(res, err, approvals)
	out := CaseResult{File: c.File, Name: c.Name, Outcome: v.Outcome, Reasons: v.Reasons, Obligations: v.Obligations}
	if out.Reasons == nil {
		out.Reasons = []string{}
	}
	var problems []string
	if v.Outcome != c.Outcome {
		problems = append(problems, fmt.Sprintf("outcome %s, want %s", v.Outcome, c.Outcome))
	}
	if c.hasReasons && !sameSet(v.Reasons, c.Reasons) {
		problems = append(problems, fmt.Sprintf("reasons %q, want %q", out.Reasons, c.Reasons))
	}
	if c.hasObl && !sameJSON(v.Obligations, c.Obligations) {
		got, _ := json.Marshal(v.Obligations)
		want, _ := json.Marshal(c.Obligations)
		problems = append(problems, fmt.Sprintf("obligations %s, want %s", got, want))
	}
	// A failed evaluation is a deny, but a case passes on it only when it
	// expects that very reason: otherwise the error is a bug in the policy.
	if err != nil && !(c.hasReasons && slices.Contains(c.Reasons, ReasonForError(err))) {
		problems = append(problems, "evaluation failed: "+err.Error())
	}
	out.Pass = len(problems) == 0
	out.Problem = strings.Join(problems, "; ")
	return out
}

func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(slices.Compact(x), slices.Compact(y))
}

// sameJSON compares two JSON-shaped values as JSON: 2, 2.0 and json.Number("2") agree.
func sameJSON(a, b any) bool {
	norm := func(v any) any {
		raw, err := json.Marshal(v)
		if err != nil {
			return err.Error()
		}
		var out any
		json.Unmarshal(raw, &out)
		return out
	}
	x, _ := json.Marshal(norm(a))
	y, _ := json.Marshal(norm(b))
	if string(x) == "null" {
		x = []byte("{}")
	}
	if string(y) == "null" {
		y = []byte("{}")
	}
	return bytes.Equal(x, y)
}

// cloneJSON copies a JSON-shaped value deeply.
func cloneJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = cloneJSON(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = cloneJSON(e)
		}
		return out
	}
	return v
}
