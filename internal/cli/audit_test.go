package cli_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/sdk"
)

// hostileText is what an agent can put in an action or a tool's name: a
// forged line, terminal escape sequences (clear the screen, set the
// window title, a hyperlink), and characters that reorder or hide text.
var hostileText = []string{
	"tools/call\n42  2026-01-01T00:00:00Z  decision  allow     ai-agent://prod/boss  tools/call  payments/approve",
	"\x1b[2J\x1b[H\x1b]0;pwned\x07\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\",
	"payments/\u202eevorppa\u202c\u200b\u0085\u009b31m\x7f\r",
}

// graphicLines fails unless out holds only graphic characters and line
// ends, and returns its lines.
func graphicLines(t *testing.T, what, out string) []string {
	t.Helper()
	for _, r := range out {
		if r != '\n' && !unicode.IsGraphic(r) {
			t.Fatalf("%s prints %U raw:\n%q", what, r, out)
		}
	}
	return strings.Split(strings.TrimSuffix(out, "\n"), "\n")
}

// What agents wrote into the audit log is printed by the CLI as data: no
// escape sequence reaches the terminal, no value makes a line of its own,
// and JSON output is the same JSON with such characters escaped.
func TestAuditTextOutputEscapesAgentText(t *testing.T) {
	t.Parallel()
	policyDir := writeBundle(t, map[string]string{"policy.rego": `package warden.authz

default allow := false

deny contains sprintf("refused %s", [input.resource.id])
`})
	w := apptest.Start(t, nil)
	g := []string{"--server", w.URL, "--admin-token-file", filepath.Join(w.Config.Data, app.AdminTokenFileName)}
	must := func(args ...string) string {
		t.Helper()
		out, errOut, code := run(t, append(args, g...)...)
		if code != 0 {
			t.Fatalf("warden %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	must("policy", "push", policyDir, "-m", "refuse all", "--activate")

	// An agent's decisions, asked by an enforcement point over HTTP, as a
	// gateway asks for a tool the agent named.
	const id = "ai-agent://dev/injected"
	k := w.Register(t, id, "reader")
	c, err := sdk.NewClient(w.URL, id, k)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cred, _, err := w.App.EnforcementPoints.Register(t.Context(), "admin:test", decide.Registration{Name: "gateway", Description: "test", Audience: "warden"})
	if err != nil {
		t.Fatal(err)
	}
	// Admin events (the registration above) reach the log on their own
	// time: the decisions are found by kind, and the last by its index.
	var lastDecision int64
	for _, text := range hostileText {
		body, _ := json.Marshal(map[string]any{"token": tok.AccessToken, "action": text,
			"resource": map[string]any{"kind": "mcp.tool", "id": text}})
		req, _ := http.NewRequest("POST", w.URL+"/v1/decide", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+cred)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			AuditIndex int64 `json:"audit_index"`
		}
		err = json.NewDecoder(resp.Body).Decode(&d)
		resp.Body.Close()
		if resp.StatusCode != 200 || err != nil {
			t.Fatalf("decide: HTTP %d, %v", resp.StatusCode, err)
		}
		lastDecision = d.AuditIndex
	}

	t.Run("audit tail", func(t *testing.T) {
		lines := graphicLines(t, "audit tail", must("audit", "tail", "-n", "1000", "--kind", "decision"))
		if len(lines) == 0 || !strings.Contains(lines[0], "REASONS") {
			t.Fatalf("no header: %q", lines)
		}
		lines = lines[1:]
		if len(lines) != len(hostileText) {
			t.Fatalf("%d lines for %d decisions:\n%s", len(lines), len(hostileText), strings.Join(lines, "\n"))
		}
		last := lines[len(lines)-1]
		if !strings.Contains(last, `payments/\u202eevorppa\u202c\u200b\u0085\u009b31m\x7f\x0d`) {
			t.Fatalf("the last decision does not show its action escaped: %s", last)
		}
	})
	t.Run("audit tail --format json", func(t *testing.T) {
		lines := graphicLines(t, "audit tail --format json", must("audit", "tail", "-n", "1000", "--kind", "decision", "--format", "json"))
		var actions []string
		for _, l := range lines {
			var e struct{ Action string }
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				t.Fatalf("not JSON: %q: %v", l, err)
			}
			actions = append(actions, e.Action)
		}
		if !slices.Equal(actions, hostileText) {
			t.Fatalf("JSON output changed the actions: %q, want %q", actions, hostileText)
		}
	})
	t.Run("audit proof", func(t *testing.T) {
		waitAudited(t, w)
		index := strconv.FormatInt(lastDecision, 10)
		graphicLines(t, "audit proof", must("audit", "proof", "--index", index))
		out := must("audit", "proof", "--index", index, "--format", "json")
		graphicLines(t, "audit proof --format json", out)
		var p struct{ Entry string }
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			t.Fatal(err)
		}
		var e struct{ Action string }
		if err := json.Unmarshal([]byte(p.Entry), &e); err != nil || e.Action != hostileText[len(hostileText)-1] {
			t.Fatalf("proof --format json changed the entry: %q", p.Entry)
		}
	})
	t.Run("policy replay", func(t *testing.T) {
		allowAll := writeBundle(t, map[string]string{"policy.rego": "package warden.authz\n\nallow := true\n"})
		out := must("policy", "replay", allowAll)
		graphicLines(t, "policy replay", out)
		if !strings.Contains(out, `\x1b[2J`) {
			t.Fatalf("replay does not show the flipped decisions' actions: %s", out)
		}
	})
}

// An error message from the server (or whatever answers in its place) is
// printed as text too: it cannot drive the terminal either.
func TestErrorsEscapeServerText(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(map[string]string{"error": "not_found", "message": "no agent " + hostileText[1] + "\nsecond line"})
	}))
	defer srv.Close()
	token := filepath.Join(t.TempDir(), "admin.token")
	os.WriteFile(token, []byte("wdn_admin_x\n"), 0o600)
	_, errOut, code := run(t, "agent", "show", "ai-agent://dev/x", "--server", srv.URL, "--admin-token-file", token)
	if code == 0 || !strings.Contains(errOut, "not_found: no agent \\x1b[2J") {
		t.Fatalf("exit %d: %q", code, errOut)
	}
	graphicLines(t, "an error", errOut)
}
