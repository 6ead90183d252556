package decide

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/monitor"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
)

// TestAgentPartFollowsTheAgent: the agent part kept between decisions is
// the agent as it is now. A change of status, owner, attributes (also made
// in place in the record's own map) or the token's roles makes a new one,
// and the kept conversion is always that of the map beside it.
func TestAgentPartFollowsTheAgent(t *testing.T) {
	p := &Pipeline{cfg: Config{RestrictedRoles: []string{"reader"}}}
	p.parts = newParts()
	const id = "ai-agent://prod/finance/trader"
	tok := &identity.Token{Claims: identity.Claims{Subject: id, Roles: []string{"reader", "trader"}}, Agent: identity.MustParseAgentID(id)}
	attrs := map[string]string{"team": "quant"}
	rec := store.Agent{ID: id, Owner: "team-quant", Status: store.StatusActive, Attributes: attrs}
	check := func(step string) map[string]any {
		t.Helper()
		m, v := p.agent(tok, rec)
		if want := p.agentInput(tok, rec); !reflect.DeepEqual(m, want) {
			t.Fatalf("%s: the agent part is %v, the agent is %v", step, m, want)
		}
		if v == nil || ast.MustInterfaceToValue(m).Compare(v) != 0 {
			t.Fatalf("%s: the kept conversion %v is not that of %v", step, v, m)
		}
		return m
	}
	first := check("first")
	if again := check("again"); reflect.ValueOf(again).UnsafePointer() != reflect.ValueOf(first).UnsafePointer() {
		t.Error("the same agent's part was built again")
	}
	rec.Status = store.StatusRestricted
	if m := check("restricted"); len(m["roles"].([]any)) != 1 {
		t.Errorf("a restricted agent keeps roles %v", m["roles"])
	}
	rec.Status = store.StatusActive
	rec.Owner = "team-risk"
	check("another owner")
	attrs["team"] = "risk" // the record's own map, changed in place
	check("attributes changed in place")
	rec.Attributes = map[string]string{"team": "risk", "desk": "fx"}
	check("another attribute")
	tok = &identity.Token{Claims: identity.Claims{Subject: id, Roles: []string{"trader"}}, Agent: tok.Agent}
	check("other roles")
	const other = "ai-agent://prod/finance/auditor"
	tok = &identity.Token{Claims: identity.Claims{Subject: other, Roles: []string{"trader"}}, Agent: identity.MustParseAgentID(other)}
	if m := check("another agent"); m["id"] != other {
		t.Errorf("another agent's part names %v", m["id"])
	}
}

// TestUnknownProvenancePart: the kept conversion of the provenance block
// of an enforcement point that does not follow reads is that block's.
func TestUnknownProvenancePart(t *testing.T) {
	for i, withArgs := range []bool{false, true} {
		if ast.MustInterfaceToValue(provenanceInput(nil, withArgs)).Compare(unknownProvenance[i]) != 0 {
			t.Errorf("withArgs %v: the kept conversion differs from the block", withArgs)
		}
	}
}

// TestResourceAndRiskParts: the resource part is kept for one policy
// version's catalog and only for requests that send no attributes of
// their own; the risk part follows the agent's risk.
func TestResourceAndRiskParts(t *testing.T) {
	p := &Pipeline{parts: newParts()}
	compile := func(readOnly string) *policy.Engine {
		e, err := policy.Compile(context.Background(), &policy.Bundle{Files: map[string][]byte{
			"policy.rego": []byte("package warden.authz\nallow := true\n"),
			"data.json":   []byte(`{"resources": {"mcp.tool": {"kb/*": {"read_only": ` + readOnly + `}}}}`),
		}}, policy.EngineConfig{})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	v1, v2 := compile("true"), compile("false")
	same := func(step string, m map[string]any, v ast.Value, want map[string]any) {
		t.Helper()
		if !reflect.DeepEqual(m, want) {
			t.Fatalf("%s: the part is %v, want %v", step, m, want)
		}
		if v != nil && ast.MustInterfaceToValue(m).Compare(v) != 0 {
			t.Fatalf("%s: the kept conversion %v is not that of %v", step, v, m)
		}
	}
	r := Resource{Kind: "mcp.tool", ID: "kb/search"}
	for _, e := range []*policy.Engine{v1, v1, v2, v1} {
		m, v := p.resource(e, r)
		same("catalog", m, v, map[string]any{"kind": r.Kind, "id": r.ID, "attributes": e.Resources().Enrich(r.Kind, r.ID, nil)})
		if v == nil {
			t.Error("a resource without attributes of its own was not kept")
		}
	}
	sent := Resource{Kind: "mcp.tool", ID: "kb/search", Attributes: map[string]any{"egress": true}}
	m, v := p.resource(v1, sent)
	same("sent", m, v, map[string]any{"kind": r.Kind, "id": r.ID, "attributes": v1.Resources().Enrich(r.Kind, r.ID, sent.Attributes)})
	if v != nil {
		t.Error("a resource with attributes of its own was kept")
	}
	if m, _ := p.resource(v1, r); m["attributes"].(map[string]any)["egress"] != nil {
		t.Errorf("attributes one request sent reached the next: %v", m)
	}

	risk := monitor.Risk{Score: 10, Level: "low", Signals: []string{"a"}}
	for _, step := range []func(){
		func() {},
		func() { risk.Score = 40; risk.Level = "medium" },
		func() { risk.Signals = append(risk.Signals, "b") },
		func() { risk.Signals[0] = "c" }, // in place
		func() { risk.Learning = true },
		func() { risk.Stale = true },
	} {
		step()
		m, v := p.riskInput("ai-agent://prod/a/b", risk)
		same(fmt.Sprintf("risk %+v", risk), m, v, risk.Input())
	}
}

// TestResourceJSON: an entry's resource is written as encoding/json wrote
// it, in canonical form (no HTML escapes), whatever the strings hold.
func TestResourceJSON(t *testing.T) {
	for _, s := range []string{"kb/search", "", `a"b\c`, "<&>", "\u2028\u2029", "\x00\x1f", "é", "\xff\xfe bad", "\u202e"} {
		r := Resource{Kind: "mcp." + s, ID: s}
		old, _ := json.Marshal(map[string]string{"kind": r.Kind, "id": r.ID})
		var v any
		json.Unmarshal(old, &v)
		want, err := audit.AppendCanonical(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		if got := resourceJSON(r); string(got) != string(want) {
			t.Errorf("%q: got %s, want %s", s, got, want)
		}
	}
}
