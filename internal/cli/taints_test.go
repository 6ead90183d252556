package cli_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/sdk"
)

// An operator sees what tainted an agent and clears it with a reason,
// which the audit log keeps with who cleared what.
func TestTaintsCommands(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	ctx := t.Context()
	v, _, _, err := w.App.Policies.Push(ctx, "admin:test", &policy.Bundle{Files: map[string][]byte{
		"policy.rego": []byte("package warden.authz\nallow := true\n")}}, "allow")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.App.Policies.Activate(ctx, "admin:test", v.ID); err != nil {
		t.Fatal(err)
	}
	const id = "ai-agent://dev/reader"
	c, err := sdk.NewClient(w.URL, id, w.Register(t, id, "reader"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d, err := w.App.Decide.DecideVerified(ctx, decide.InProcess("test-pep", "warden"), &decide.Request{Token: tok.AccessToken, Action: "tools/call",
		Resource: decide.Resource{Kind: "mcp.tool", ID: "web/fetch", Attributes: map[string]any{"trust": "untrusted"}}})
	if err != nil || d.Outcome != policy.Allow {
		t.Fatalf("the untrusted read: %+v, %v", d, err)
	}
	g := []string{"--server", w.URL, "--admin-token-file", filepath.Join(w.Config.Data, app.AdminTokenFileName)}
	cmd := func(args ...string) (string, string, int) { return run(t, append(args, g...)...) }

	out, errOut, code := cmd("agent", "taints", id)
	if code != 0 || !strings.Contains(out, "untrusted_content") || !strings.Contains(out, "web/fetch") || !strings.Contains(out, d.ID) {
		t.Fatalf("agent taints: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code := cmd("agent", "clear-taints", id); code == 0 || !strings.Contains(errOut, "--reason") {
		t.Fatalf("clear-taints without a reason: exit %d, %s", code, errOut)
	}
	out, errOut, code = cmd("agent", "clear-taints", id, "--reason", "the page was checked by hand")
	if code != 0 || !strings.Contains(out, "cleared 1 taint") {
		t.Fatalf("clear-taints: exit %d\n%s%s", code, out, errOut)
	}
	if out, _, _ := cmd("agent", "taints", id); !strings.Contains(out, "no taints") {
		t.Fatalf("after clearing: %s", out)
	}
	// The clear is in the audit log, with its reason and the admin's name.
	n, err := w.App.Audit.Size(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := w.App.Audit.Read(ctx, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, b := range raw {
		e, err := audit.DecodeEntry(b)
		if err != nil || e.Kind != audit.KindAdmin || e.Action != "taint.clear" {
			continue
		}
		found = strings.Contains(string(e.Detail), "the page was checked by hand") && strings.Contains(string(e.Detail), d.ID)
	}
	if !found {
		t.Fatal("no audit entry for the clear, with its reason and what it cleared")
	}
}
