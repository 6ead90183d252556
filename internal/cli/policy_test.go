package cli_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/sdk"
)

const cliPolicy = `package warden.authz

default allow := false

allow if {
	input.action == "tools/call"
	"reader" in input.agent.roles
}
`

const cliPolicyTest = `package warden.authz_test

import data.warden.authz

test_reader if authz.allow with input as {"action": "tools/call", "agent": {"roles": ["reader"]}}
`

func writeBundle(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestPolicyLifecycle drives the policy commands against a real server:
// test, push, list, show, diff, replay of recorded traffic, activate,
// rollback, and enforcement point credentials.
func TestPolicyLifecycle(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	g := []string{"--server", w.URL, "--admin-token-file", filepath.Join(w.Config.Data, app.AdminTokenFileName)}
	cmd := func(args ...string) (string, string, int) {
		t.Helper()
		return run(t, append(args, g...)...)
	}
	must := func(args ...string) string {
		t.Helper()
		out, errOut, code := cmd(args...)
		if code != 0 {
			t.Fatalf("warden %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	v1dir := writeBundle(t, map[string]string{"policy.rego": cliPolicy, "policy_test.rego": cliPolicyTest,
		"cases/basic.yaml": "- {name: readers call tools, input: {action: tools/call, agent: {roles: [reader]}}, outcome: allow}\n"})
	if out := must("policy", "test", v1dir, "-v"); !strings.Contains(out, "1 tests passed") || !strings.Contains(out, "1 of 1 cases passed") {
		t.Fatalf("policy test: %s", out)
	}
	out := must("policy", "push", v1dir, "-m", "first", "--activate")
	if !strings.Contains(out, "pushed sha256:") || !strings.Contains(out, "active: sha256:") {
		t.Fatalf("push: %s", out)
	}
	v1 := w.App.Policies.Live().State.Active

	// A bundle whose tests fail is refused, with the report.
	bad := writeBundle(t, map[string]string{"policy.rego": cliPolicy, "policy_test.rego": strings.Replace(cliPolicyTest, "authz.allow", "not authz.allow", 1)})
	if _, errOut, code := cmd("policy", "push", bad, "-m", "broken"); code != 1 || !strings.Contains(errOut, "FAIL  warden.authz_test.test_reader") {
		t.Fatalf("push of a failing bundle: exit %d, %s", code, errOut)
	}
	if _, _, code := cmd("policy", "test", bad); code != 1 {
		t.Fatalf("policy test of a failing bundle: exit %d", code)
	}
	if _, _, code := cmd("policy", "test", filepath.Join(bad, "missing")); code != 2 {
		t.Fatalf("policy test of a missing directory: exit %d", code)
	}

	// Traffic under v1: a reader allowed, a writer denied.
	ctx := context.Background()
	for _, a := range []struct{ id, role string }{{"ai-agent://dev/reader", "reader"}, {"ai-agent://dev/writer", "writer"}} {
		k := w.Register(t, a.id, a.role)
		c, _ := sdk.NewClient(w.URL, a.id, k)
		tok, err := c.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.App.Decide.Decide(ctx, decide.InProcess("pep-test", "warden"), &decide.Request{Token: tok.AccessToken, Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool", ID: "x"}}); err != nil {
			t.Fatal(err)
		}
	}

	// v2 lets writers in. Diff, then replay says which decisions flip.
	v2dir := writeBundle(t, map[string]string{"policy.rego": strings.Replace(cliPolicy, `"reader" in input.agent.roles`, `input.agent.roles[_] in {"reader", "writer"}`, 1),
		"policy_test.rego": cliPolicyTest, "cases/basic.yaml": "- {name: readers call tools, input: {action: tools/call, agent: {roles: [reader]}}, outcome: allow}\n"})
	out = must("policy", "diff", "active", v2dir, "--patch")
	if !strings.Contains(out, "M policy.rego") || !strings.Contains(out, `+ 	input.agent.roles[_] in {"reader", "writer"}`) {
		t.Fatalf("diff: %s", out)
	}
	out = must("policy", "replay", v2dir, "--since", "1h")
	if !strings.Contains(out, "2 decisions replayed") || !strings.Contains(out, "1 would change") || !strings.Contains(out, "ai-agent://dev/writer  tools/call") || !strings.Contains(out, "deny->allow") {
		t.Fatalf("replay: %s", out)
	}
	must("policy", "push", v2dir, "-m", "writers too")
	out = must("policy", "list")
	if strings.Count(out, "sha256:") != 2 || !strings.Contains(out, "active") || !strings.Contains(out, "writers too") {
		t.Fatalf("list: %s", out)
	}
	v2 := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "writers too") {
			v2 = strings.Fields(l)[0]
		}
	}
	out = must("policy", "activate", strings.TrimPrefix(v2, "sha256:"))
	if !strings.Contains(out, "active  "+v2) {
		t.Fatalf("activate by a digest prefix: %s", out)
	}
	if out := must("policy", "show", "active"); !strings.Contains(out, "writers too") || !strings.Contains(out, "parent   "+v1) {
		t.Fatalf("show: %s", out)
	}
	if out := must("policy", "rollback"); !strings.Contains(out, "active  "+v1) {
		t.Fatalf("rollback: %s", out)
	}

	// Enforcement point credentials: written 0600, never printed.
	cred := filepath.Join(t.TempDir(), "gw.cred")
	out = must("pep", "register", "gw-eu", "--audience", "warden", "--out", cred, "--description", "EU gateway")
	b, err := os.ReadFile(cred)
	if st, _ := os.Stat(cred); err != nil || st.Mode().Perm() != 0o600 || !strings.HasPrefix(string(b), "wpep_") || strings.Contains(out, "wpep_") {
		t.Fatalf("pep register: %s (%v)", out, err)
	}
	if _, ok := w.App.EnforcementPoints.Authenticate(strings.TrimSpace(string(b))); !ok {
		t.Fatal("the written credential does not authenticate")
	}
	if _, _, code := cmd("pep", "register", "gw-eu", "--audience", "warden", "--out", cred); code == 0 {
		t.Fatal("pep register over an existing file")
	}
	var list struct {
		EnforcementPoints []struct{ Name, Status string } `json:"enforcement_points"`
	}
	json.Unmarshal([]byte(must("pep", "list", "--format", "json")), &list)
	if len(list.EnforcementPoints) != 1 || list.EnforcementPoints[0].Status != "active" {
		t.Fatalf("pep list: %+v", list)
	}
	must("pep", "revoke", "gw-eu")
	if _, ok := w.App.EnforcementPoints.Authenticate(strings.TrimSpace(string(b))); ok {
		t.Fatal("a revoked credential authenticates")
	}
}

// warden token proof makes a DPoP proof that verifies for the request it names.
func TestTokenProof(t *testing.T) {
	t.Parallel()
	k := sdk.GenerateKey()
	keyFile := filepath.Join(t.TempDir(), "agent.jwk")
	if _, err := k.WriteFiles(keyFile); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := run(t, "token", "proof", "--key", keyFile, "--method", "POST", "--url", "https://tools.example/mcp", "--token", "tok")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	v := identity.NewDPoPVerifier(identity.DPoPConfig{})
	check := identity.DPoPCheck{Method: "POST", URL: "https://tools.example/mcp", AccessToken: "tok", JKT: k.Thumbprint()}
	if _, err := v.Verify(strings.TrimSpace(out), check); err != nil {
		t.Fatalf("the proof does not verify: %v", err)
	}
	check.URL = "https://tools.example/other"
	fresh := identity.NewDPoPVerifier(identity.DPoPConfig{}) // not a replay: another request
	if _, err := fresh.Verify(strings.TrimSpace(out), check); err == nil {
		t.Fatal("the proof verifies for another URL")
	}
	if _, _, code := run(t, "token", "proof", "--key", keyFile); code == 0 {
		t.Fatal("a proof without method, URL and token")
	}
}

// Every command that reads a bundle directory (CI runs `policy test` on
// pull requests) refuses a link that leads out of it, and says which file
// is the link without printing where it points or what is there.
func TestPolicyCommandsRefuseLinksOutOfTheBundle(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	const secret = "root:x:0:0:cli-outside-secret:/root:/bin/bash"
	if err := os.WriteFile(filepath.Join(outside, "passwd"), []byte(secret+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := writeBundle(t, map[string]string{"policy.rego": cliPolicy})
	if err := os.Symlink(filepath.Join(outside, "passwd"), filepath.Join(dir, "users.rego")); err != nil {
		t.Fatal(err)
	}
	good := writeBundle(t, map[string]string{"policy.rego": cliPolicy})
	unreachable := []string{"--server", "http://127.0.0.1:1", "--admin-token-file", filepath.Join(outside, "none")}
	for name, args := range map[string][]string{
		"test":   {"policy", "test", dir},
		"push":   append([]string{"policy", "push", dir, "-m", "x"}, unreachable...),
		"diff":   {"policy", "diff", good, dir},
		"replay": {"policy", "replay", dir, "--from", filepath.Join(outside, "export.jsonl")},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, errOut, code := run(t, args...)
			if code == 0 {
				t.Fatalf("exit 0 on a bundle that links out:\n%s", out)
			}
			if !strings.Contains(errOut, "users.rego is a symbolic link that leads out of the bundle") {
				t.Errorf("stderr does not name the link:\n%s", errOut)
			}
			if all := out + errOut; strings.Contains(all, "cli-outside-secret") || strings.Contains(all, outside) {
				t.Errorf("the output shows the linked file or where it is:\n%s", all)
			}
		})
	}
}
