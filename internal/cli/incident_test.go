package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
	"github.com/warden-run/warden/sdk"
)

const quarantinePlaybook = `package warden.response

actions contains {"action": "alert"} if input.risk.level != "low"
actions contains {"action": "quarantine", "reason": "probing"} if input.risk.level == "critical"
`

// An agent that probes is quarantined by the playbook; an operator finds
// why with warden agent risk and warden incident, acknowledges and
// resolves the incident, and a dry run of a stricter playbook over the
// same traffic says what it would have done.
func TestIncidentCommands(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	ctx := t.Context()
	files := map[string][]byte{"policy.rego": []byte("package warden.authz\n\ndefault allow := false\n"), "response.rego": []byte(quarantinePlaybook)}
	v, _, _, err := w.App.Policies.Push(ctx, "admin:test", &policy.Bundle{Files: files}, "nothing allowed")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.App.Policies.Activate(ctx, "admin:test", v.ID); err != nil {
		t.Fatal(err)
	}
	const id = "ai-agent://dev/prober"
	c, err := sdk.NewClient(w.URL, id, w.Register(t, id, "worker"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := w.App.Decide.Decide(ctx, decide.InProcess("test-pep", "warden"), &decide.Request{Token: tok.AccessToken,
			Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool", ID: "payments/transfer"}}); err != nil {
			t.Fatal(err)
		}
	}
	// The responder sets the status, then records the action in the
	// incident: wait for both.
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, _ := w.App.Registry.Agent(ctx, id)
		open, _ := w.App.Store.Incidents(ctx, store.IncidentFilter{AgentID: id, Open: true, Limit: 1})
		recorded := len(open) == 1 && slices.ContainsFunc(open[0].Actions, func(a store.IncidentAction) bool { return a.Action == "quarantine" })
		if a.Status == store.StatusQuarantined && recorded {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not quarantined and recorded: %s, %v", a.Status, open)
		}
		time.Sleep(5 * time.Millisecond)
	}
	g := []string{"--server", w.URL, "--admin-token-file", filepath.Join(w.Config.Data, app.AdminTokenFileName)}
	cmd := func(args ...string) (string, string, int) { return run(t, append(args, g...)...) }

	out, errOut, code := cmd("agent", "risk", id)
	if code != 0 || !strings.Contains(out, "critical") || !strings.Contains(out, "not_permitted") {
		t.Fatalf("agent risk: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = cmd("incident", "list", "--format", "json")
	var list struct {
		Incidents []store.Incident `json:"incidents"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list.Incidents) != 1 {
		t.Fatalf("incident list: exit %d\n%s%s", code, out, errOut)
	}
	inc := list.Incidents[0].ID
	out, errOut, code = cmd("incident", "show", inc)
	if code != 0 || !strings.Contains(out, "quarantine") || !strings.Contains(out, "not_permitted") {
		t.Fatalf("incident show: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code := cmd("incident", "ack", inc); code == 0 || !strings.Contains(errOut, "--reason") {
		t.Fatalf("ack without a reason: exit %d %s", code, errOut)
	}
	if out, errOut, code := cmd("incident", "ack", inc, "--reason", "looking"); code != 0 || !strings.Contains(out, "acknowledged") {
		t.Fatalf("ack: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = cmd("incident", "resolve", inc, "--reason", "key rotated")
	if code != 0 || !strings.Contains(out, "resolved") || !strings.Contains(out, "still in force: quarantine") {
		t.Fatalf("resolve: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code := cmd("incident", "resolve", inc, "--reason", "again"); code == 0 || !strings.Contains(errOut, "resolved already") {
		t.Fatalf("resolving twice: exit %d %s", code, errOut)
	}
	if out, _, _ := cmd("incident", "list"); !strings.Contains(out, "no incidents") {
		t.Fatalf("open incidents after resolving: %s", out)
	}
	if out, errOut, code := cmd("monitor", "status"); code != 0 || !strings.Contains(out, "0 behind") {
		t.Fatalf("monitor status: exit %d\n%s%s", code, out, errOut)
	}

	// The active playbook on the same traffic, then a stricter one.
	out, errOut, code = cmd("monitor", "replay", "--since", "1h")
	if code != 0 || !strings.Contains(out, "1 incidents would have opened") || !strings.Contains(out, "critical") {
		t.Fatalf("monitor replay of the active bundle: exit %d\n%s%s", code, out, errOut)
	}
	dir := t.TempDir()
	strict := strings.Replace(quarantinePlaybook, `input.risk.level == "critical"`, `input.risk.level in {"medium", "high", "critical"}`, 1)
	for name, body := range map[string]string{"policy.rego": "package warden.authz\n\ndefault allow := false\n", "response.rego": strict} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, code = cmd("monitor", "replay", dir, "--since", "1h")
	if code != 0 || !strings.Contains(out, "1 incidents would have opened") || !strings.Contains(out, id) || !strings.Contains(out, "alert,quarantine") {
		t.Fatalf("monitor replay: exit %d\n%s%s", code, out, errOut)
	}
}
