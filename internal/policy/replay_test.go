package policy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/warden-run/warden/internal/policy"
)

// The candidate opens orders to traders at night and closes reports to
// analysts; its catalog makes a table PII. The replay must report exactly
// those flips, per agent and action.
func TestReplayFlips(t *testing.T) {
	t.Parallel()
	recorded := `package warden.authz

default allow := false

allow if {
	input.action == "orders/place"
	"trader" in input.agent.roles
	not night
}

allow if {
	input.action == "reports/read"
	"analyst" in input.agent.roles
}

allow if input.action == "tables/read"

deny contains "pii" if input.resource.attributes.pii

night if time.clock(time.parse_rfc3339_ns(input.context.time))[0] < 6
`
	candidate := strings.Replace(recorded, "\tnot night\n", "", 1)
	candidate = strings.Replace(candidate, `"analyst" in input.agent.roles`, `"auditor" in input.agent.roles`, 1)
	ctx := context.Background()
	old, err := policy.Compile(ctx, bundle(map[string]string{"p.rego": recorded}), policy.EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cand, err := policy.Compile(ctx, bundle(map[string]string{"p.rego": candidate,
		"data.json": `{"resources": {"db.table": {"customers": {"pii": true}}}}`}), policy.EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}

	r := policy.NewReplayer(cand, 2)
	record := func(agent, role, action, kind, id, at string) {
		input := map[string]any{
			"agent":    map[string]any{"id": agent, "roles": []any{role}},
			"action":   action,
			"resource": map[string]any{"kind": kind, "id": id, "attributes": map[string]any{}},
			"context":  map[string]any{"time": at},
		}
		res := policy.Case{Input: input}.Run(ctx, old)
		raw, _ := json.Marshal(input)
		res2, _ := json.Marshal(map[string]string{"kind": kind, "id": id})
		r.Add(ctx, policy.Recorded{DecisionID: fmt.Sprintf("dec_%s_%s_%s", role, action, at), Agent: agent, Action: action,
			Resource: res2, Outcome: res.Outcome, Reasons: res.Reasons, Input: raw})
	}
	for _, h := range []string{"02", "03", "04", "10", "11"} {
		record("ai-agent://prod/trader", "trader", "orders/place", "api", "orders", "2026-11-27T"+h+":00:00Z")
	}
	for range 3 {
		record("ai-agent://prod/analyst", "analyst", "reports/read", "api", "q3", "2026-11-27T10:00:00Z")
	}
	record("ai-agent://prod/analyst", "analyst", "tables/read", "db.table", "customers", "2026-11-27T10:00:00Z")
	record("ai-agent://prod/analyst", "analyst", "tables/read", "db.table", "prices", "2026-11-27T10:00:00Z")
	r.Add(ctx, policy.Recorded{DecisionID: "dec_unauthenticated", Outcome: policy.Deny})
	r.Add(ctx, policy.Recorded{DecisionID: "dec_redacted", Agent: "ai-agent://prod/trader", Action: "orders/place", Outcome: policy.Allow,
		Input: json.RawMessage(`{"agent": {"roles": ["trader"]}, "action": "orders/place", "args": {"card": "[redacted]"}, "context": {"time": "2026-11-27T10:00:00Z"}}`)})

	rep := r.Report()
	if rep.Decisions != 11 || rep.Skipped != 1 || rep.Redacted != 1 || rep.Flipped != 7 || rep.Version != cand.Version() {
		t.Fatalf("totals: %+v", rep)
	}
	want := []struct {
		agent, action, change string
		n                     int
	}{
		{"ai-agent://prod/analyst", "reports/read", "allow->deny", 3},
		{"ai-agent://prod/trader", "orders/place", "deny->allow", 3},
		{"ai-agent://prod/analyst", "tables/read", "allow->deny", 1},
	}
	if len(rep.Flips) != len(want) {
		t.Fatalf("flip groups %+v", rep.Flips)
	}
	for i, w := range want {
		g := rep.Flips[i]
		if g.Agent != w.agent || g.Action != w.action || g.Counts[w.change] != w.n || g.Total != w.n {
			t.Errorf("group %d: %+v, want %s %s %s x%d", i, g, w.agent, w.action, w.change, w.n)
		}
		if len(g.Examples) != min(w.n, 2) {
			t.Errorf("group %d: %d examples", i, len(g.Examples))
		}
	}
	if ex := rep.Flips[2].Examples[0]; ex.Was != policy.Allow || ex.Now != policy.Deny || ex.NowReasons[0] != "pii" || string(ex.Resource) != `{"id":"customers","kind":"db.table"}` {
		t.Fatalf("the catalog's flip: %+v", ex)
	}
	var text strings.Builder
	if err := rep.WriteText(&text); err != nil || !strings.Contains(text.String(), "11 decisions replayed") || !strings.Contains(text.String(), "deny->allow") {
		t.Fatalf("text report: %v\n%s", err, text.String())
	}
}
