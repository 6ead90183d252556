package cli_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/sdk"
)

// A person finds a held action, reads exactly what it runs, approves it,
// and the agent's next identical call runs.
func TestApprovalCommands(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	ctx := t.Context()
	rego := "package warden.authz\n\nallow := true\n\nobligations[\"require_approvals\"] := {\"count\": 1, \"expires\": \"30m\"}\n"
	v, _, _, err := w.App.Policies.Push(ctx, "admin:test", &policy.Bundle{Files: map[string][]byte{"policy.rego": []byte(rego)}}, "approvals")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.App.Policies.Activate(ctx, "admin:test", v.ID); err != nil {
		t.Fatal(err)
	}
	const id = "ai-agent://dev/plant/tuner"
	c, err := sdk.NewClient(w.URL, id, w.Register(t, id, "tuner"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	call := func() decide.Decision {
		d, err := w.App.Decide.Decide(ctx, decide.InProcess("plant-gw", "warden"), &decide.Request{Token: tok.AccessToken, Action: "tools/call",
			Resource: decide.Resource{Kind: "mcp.tool", ID: "plc/set_setpoint"}, Args: []byte(`{"oven": 3, "setpoint": 245.0}`)})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := call()
	if d.Outcome != policy.PendingApproval || d.Approval == nil {
		t.Fatalf("decision %+v", d)
	}
	g := []string{"--server", w.URL, "--admin-token-file", filepath.Join(w.Config.Data, app.AdminTokenFileName)}
	cmd := func(args ...string) (string, string, int) { return run(t, append(args, g...)...) }

	out, errOut, code := cmd("approval", "list")
	if code != 0 || !strings.Contains(out, d.Approval.ID) || !strings.Contains(out, "pending") || !strings.Contains(out, "0/1") {
		t.Fatalf("approval list: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = cmd("approval", "show", d.Approval.ID)
	if code != 0 || !strings.Contains(out, `{"oven":3,"setpoint":245}`) || !strings.Contains(out, "plc/set_setpoint") || !strings.Contains(out, "no votes yet") {
		t.Fatalf("approval show: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code := cmd("approve", d.Approval.ID); code == 0 || !strings.Contains(errOut, "--reason") {
		t.Fatalf("approve without a reason: exit %d %s", code, errOut)
	}
	if _, errOut, code := cmd("approve", "apr_none", "--reason", "x"); code == 0 || !strings.Contains(errOut, "not found") {
		t.Fatalf("approve an unknown request: exit %d %s", code, errOut)
	}
	out, errOut, code = cmd("approve", d.Approval.ID, "--reason", "setpoint checked against the recipe")
	if code != 0 || !strings.Contains(out, "approved (1 of 1") || !strings.Contains(out, "runs, once") {
		t.Fatalf("approve: exit %d\n%s%s", code, out, errOut)
	}
	if d := call(); d.Outcome != policy.Allow {
		t.Fatalf("the approved call: %+v", d)
	}
	if out, _, _ := cmd("approval", "list", "--status", "consumed"); !strings.Contains(out, d.Approval.ID) {
		t.Fatalf("consumed requests: %s", out)
	}
	if out, _, _ := cmd("approval", "list"); !strings.Contains(out, "no approval requests") {
		t.Fatalf("live requests after the run: %s", out)
	}
}

// A person asks for a grant for an agent, lists it, completes its task.
func TestGrantCommands(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	ctx := t.Context()
	rules := "package warden.grants\n\ndecision := {\"outcome\": \"grant\"} if input.requester.kind == \"human\"\n"
	v, _, _, err := w.App.Policies.Push(ctx, "admin:test", &policy.Bundle{Files: map[string][]byte{
		"policy.rego": []byte("package warden.authz\n\ndefault allow := false\n"), "grants.rego": []byte(rules)}}, "grants")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.App.Policies.Activate(ctx, "admin:test", v.ID); err != nil {
		t.Fatal(err)
	}
	const id = "ai-agent://dev/finance/trader"
	w.Register(t, id, "trader")
	g := []string{"--server", w.URL, "--admin-token-file", filepath.Join(w.Config.Data, app.AdminTokenFileName)}
	cmd := func(args ...string) (string, string, int) { return run(t, append(args, g...)...) }
	if _, errOut, code := cmd("grant", "ask", id, "--action", "tools/call", "--resource", "broker/place_order"); code == 0 || !strings.Contains(errOut, "--reason") {
		t.Fatalf("ask without a reason: exit %d %s", code, errOut)
	}
	if _, errOut, code := cmd("grant", "ask", id, "--action", "tools/call", "--resource", "*", "--reason", "x"); code == 0 || !strings.Contains(errOut, "not * alone") {
		t.Fatalf("ask for everything: exit %d %s", code, errOut)
	}
	out, errOut, code := cmd("grant", "ask", id, "--task", "Q4-rebalance", "--action", "tools/call", "--resource", "broker/place_order",
		"--constraint", "max_notional=5000000", "--constraint", "desk=rates", "--lifetime", "30m", "--reason", "rebalance approved by the desk")
	if code != 0 || !strings.Contains(out, "is active until") {
		t.Fatalf("ask: exit %d\n%s%s", code, out, errOut)
	}
	out, _, _ = cmd("grant", "list")
	if !strings.Contains(out, "Q4-rebalance") || !strings.Contains(out, "broker/place_order") {
		t.Fatalf("list: %s", out)
	}
	out, errOut, code = cmd("grant", "complete", "Q4-rebalance", "--reason", "done")
	if code != 0 || !strings.Contains(out, "1 grant ended") {
		t.Fatalf("complete: exit %d\n%s%s", code, out, errOut)
	}
	if out, _, _ := cmd("grant", "list"); !strings.Contains(out, "no grants") {
		t.Fatalf("live grants after completion: %s", out)
	}
	if out, _, _ := cmd("grant", "list", "--status", "completed", "--format", "json"); !strings.Contains(out, `"max_notional": 5000000`) || !strings.Contains(out, `"desk": "rates"`) {
		t.Fatalf("completed grants: %s", out)
	}
}
