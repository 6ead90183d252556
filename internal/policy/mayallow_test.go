package policy_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/policy"
)

// MayAllow hides only what no arguments could allow.
func TestMayAllow(t *testing.T) {
	t.Parallel()
	e := compile(t, `package warden.authz
default allow := false
allow if input.agent.role == "trader"
allow if { input.agent.role == "bounded"; input.args.amount < 100 }
deny contains "closed" if input.context.closed
deny contains "too much" if input.args.amount > 1000
deny contains "never" if { input.agent.role == "bounded"; input.args.amount >= 100 }
allow if { input.agent.role == "radiology"; some g in input.context.grants; g.matches }
deny contains "no grant" if { input.agent.role == "radiology-gated"; not granted }
allow if input.agent.role == "radiology-gated"
granted if { some g in input.context.grants; g.matches }
`, policy.EngineConfig{})
	at := time.Unix(0, 0)
	cases := []struct {
		name  string
		input map[string]any
		want  bool
	}{
		{"allowed whatever the arguments", map[string]any{"agent": map[string]any{"role": "trader"}, "context": map[string]any{}}, true},
		{"allowed for some arguments only", map[string]any{"agent": map[string]any{"role": "bounded"}, "context": map[string]any{}}, true},
		{"never allowed to this agent", map[string]any{"agent": map[string]any{"role": "guest"}, "context": map[string]any{}}, false},
		{"denied whatever the arguments", map[string]any{"agent": map[string]any{"role": "trader"}, "context": map[string]any{"closed": true}}, false},
		{"arguments sent are not used", map[string]any{"agent": map[string]any{"role": "trader"}, "context": map[string]any{}, "args": map[string]any{"amount": 5000}}, true},
		{"allowed under a grant the agent could ask for", map[string]any{"agent": map[string]any{"role": "radiology"}, "context": map[string]any{"grants": []any{}}}, true},
		{"denied without a grant, which it could ask for", map[string]any{"agent": map[string]any{"role": "radiology-gated"}, "context": map[string]any{"grants": []any{}}}, true},
	}
	for _, c := range cases {
		got, err := e.MayAllow(context.Background(), c.input, at)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got != c.want {
			t.Errorf("%s: MayAllow = %v, want %v", c.name, got, c.want)
		}
	}
}

// MayAllow is false, with the error, when the policy fails.
func TestMayAllowFailsClosed(t *testing.T) {
	t.Parallel()
	e := compile(t, "package warden.authz\nallow := true if to_number(input.agent.n) > 1", policy.EngineConfig{})
	ok, err := e.MayAllow(context.Background(), map[string]any{"agent": map[string]any{"n": "x"}}, time.Unix(0, 0))
	if ok || err == nil {
		t.Fatalf("MayAllow = %v, %v; want false and an error", ok, err)
	}
}

// Every decision case of the shipped bundles that allows is one MayAllow
// shows, with or without its arguments; and MayAllow hides at least one
// denied case in every bundle, so it is not true for everything.
func TestMayAllowAgreesWithShippedCases(t *testing.T) {
	t.Parallel()
	eachShippedBundle(t, func(t *testing.T, b *policy.Bundle, cases []policy.Case) {
		ctx := context.Background()
		e, err := policy.Compile(ctx, b, policy.EngineConfig{Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		hidden := 0
		for _, c := range cases {
			input := roundTrip(t, c.Input)
			r := input["resource"].(map[string]any)
			sent, _ := r["attributes"].(map[string]any)
			r["attributes"] = e.Resources().Enrich(r["kind"].(string), r["id"].(string), sent)
			at := time.Unix(0, 0).UTC()
			if s, ok := input["context"].(map[string]any)["time"].(string); ok {
				at, _ = time.Parse(time.RFC3339, s)
			}
			may, err := e.MayAllow(ctx, input, at)
			if err != nil {
				t.Fatalf("%s: %v", c.Name, err)
			}
			if c.Outcome == policy.Allow && !may {
				t.Errorf("%s: allowed, but MayAllow hides it", c.Name)
			}
			if !may {
				hidden++
			}
		}
		if hidden == 0 {
			t.Errorf("MayAllow hid none of %d cases", len(cases))
		}
	})
}

func roundTrip(t *testing.T, v map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
