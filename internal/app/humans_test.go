package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/humans"
	"github.com/warden-run/warden/internal/humans/oidctest"
	"github.com/warden-run/warden/internal/server"
	"github.com/warden-run/warden/internal/store"
	"github.com/warden-run/warden/sdk"
)

// people: one per role, and their groups at the provider.
var people = map[string]oidctest.User{
	"admin":           {ID: "u-admin", Username: "ada", Email: "ada@example.com", Groups: []string{"g-admin"}},
	"policy-author":   {ID: "u-author", Username: "pat", Email: "pat@example.com", Groups: []string{"g-author"}},
	"approver":        {ID: "u-approver", Username: "abe", Email: "abe@example.com", Groups: []string{"g-approver"}},
	"auditor":         {ID: "u-auditor", Username: "aud", Email: "aud@example.com", Groups: []string{"g-auditor"}},
	"viewer":          {ID: "u-viewer", Username: "vic", Email: "vic@example.com", Groups: []string{"g-viewer"}},
	"operator":        {ID: "u-operator", Username: "ope", Email: "ope@example.com", Groups: []string{"g-operator"}},
	"safety-reviewer": {ID: "u-safety", Username: "saf", Email: "saf@example.com", Groups: []string{"g-safety"}},
}

func humansServer(t *testing.T, edit func(*humans.Config)) (*apptest.Instance, *oidctest.Provider) {
	t.Helper()
	var users []oidctest.User
	for _, u := range people {
		users = append(users, u)
	}
	p := oidctest.Start(t, users...)
	w := apptest.Start(t, func(c *config.Config) {
		c.Humans = humans.Config{Issuer: p.Issuer, ClientID: oidctest.ClientID,
			Groups: map[string][]string{"g-admin": {"admin"}, "g-author": {"policy-author"}, "g-approver": {"approver"},
				"g-auditor": {"auditor"}, "g-viewer": {"viewer"}, "g-operator": {"operator"}, "g-safety": {"safety-reviewer"}},
			Roles: map[string][]string{"safety-reviewer": {"approvals.read", "approvals.vote"}}}
		if edit != nil {
			edit(&c.Humans)
		}
	})
	return w, p
}

// signIn exchanges an ID token for a session; status is the answer's.
func signIn(t *testing.T, w *apptest.Instance, idToken, nonce string) (int, server.LoginResponse) {
	t.Helper()
	body, _ := json.Marshal(server.LoginRequest{IDToken: idToken, Nonce: nonce})
	resp, err := http.Post(w.URL+"/v1/auth/login", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lr server.LoginResponse
	json.NewDecoder(resp.Body).Decode(&lr)
	return resp.StatusCode, lr
}

func call(t *testing.T, w *apptest.Instance, bearer, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, w.URL+path, strings.NewReader(body))
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// ID tokens a relying party must refuse are refused, and open nothing.
func TestSignInRefusesBadIDTokens(t *testing.T) {
	t.Parallel()
	w, p := humansServer(t, nil)
	u := people["admin"]
	for name, tok := range map[string]string{
		"expired":          p.IDToken(t, u, oidctest.Expired()),
		"another audience": p.IDToken(t, u, oidctest.Audience(oidctest.OtherClientID)),
		"another issuer":   p.IDToken(t, u, oidctest.Issuer("http://evil.example")),
		"unsigned":         p.IDToken(t, u, oidctest.Unsigned()),
		"a foreign key":    p.IDToken(t, u, oidctest.ForeignKey()),
		"not a JWT":        "not-a-token",
	} {
		if status, lr := signIn(t, w, tok, ""); status != http.StatusUnauthorized || lr.SessionToken != "" {
			t.Errorf("%s: HTTP %d, session %v", name, status, lr.SessionToken != "")
		}
	}
	// The nonce a browser sign-in asked for must be the token's, and a token
	// that carries one is not taken without it.
	if status, _ := signIn(t, w, p.IDToken(t, u, oidctest.Nonce("n-1")), "n-2"); status != http.StatusUnauthorized {
		t.Errorf("another nonce: HTTP %d", status)
	}
	if status, _ := signIn(t, w, p.IDToken(t, u, oidctest.Nonce("n-3")), ""); status != http.StatusUnauthorized {
		t.Errorf("a nonce-bearing token without its nonce: HTTP %d", status)
	}
	// Issued to another client that listed Warden's among its audiences.
	if status, _ := signIn(t, w, p.IDToken(t, u, oidctest.Audiences(oidctest.OtherClientID, oidctest.ClientID), oidctest.AuthorizedParty(oidctest.OtherClientID)), ""); status != http.StatusUnauthorized {
		t.Errorf("azp of another client: HTTP %d", status)
	}
	if status, _ := signIn(t, w, p.IDToken(t, u, oidctest.IssuedIn(24*time.Hour)), ""); status != http.StatusUnauthorized {
		t.Errorf("issued in the future: HTTP %d", status)
	}
	if hs, _ := w.App.Store.Humans(t.Context()); len(hs) != 0 {
		t.Fatalf("refused sign-ins left people behind: %v", hs)
	}
	// The good one works, and its session is a credential; a made-up one is not.
	status, lr := signIn(t, w, p.IDToken(t, u, oidctest.Nonce("n-1")), "n-1")
	if status != http.StatusOK || lr.Principal.ID != "human:"+p.Issuer+"#"+u.ID || !slices.Equal(lr.Principal.Roles, []string{"admin"}) {
		t.Fatalf("good sign-in: HTTP %d %+v", status, lr.Principal)
	}
	if code, _ := call(t, w, lr.SessionToken, "GET", "/v1/agents", ""); code != http.StatusOK {
		t.Fatalf("the session: HTTP %d", code)
	}
	// An ID token signs in once: seen in a log, it opens nothing more.
	once := p.IDToken(t, people["viewer"])
	if status, _ := signIn(t, w, once, ""); status != http.StatusOK {
		t.Fatalf("first use: HTTP %d", status)
	}
	if status, _ := signIn(t, w, once, ""); status != http.StatusUnauthorized {
		t.Fatalf("the same ID token again: HTTP %d", status)
	}
	if code, _ := call(t, w, "wdn_session_madeup", "GET", "/v1/agents", ""); code != http.StatusUnauthorized {
		t.Fatalf("a made-up session: HTTP %d", code)
	}
	if code, _ := call(t, w, lr.SessionToken, "POST", "/v1/auth/logout", ""); code != http.StatusOK {
		t.Fatalf("logout: HTTP %d", code)
	}
	if code, _ := call(t, w, lr.SessionToken, "GET", "/v1/agents", ""); code != http.StatusUnauthorized {
		t.Fatalf("a session after logout: HTTP %d", code)
	}
}

// Every admin endpoint, for every role: refused with 403 unless the role
// is written here as allowed. The table is the contract, written out by
// hand (not derived from the code it checks).
func TestRolePermissionMatrix(t *testing.T) {
	t.Parallel()
	w, p := humansServer(t, nil)
	sessions := map[string]string{}
	for role, u := range people {
		status, lr := signIn(t, w, p.IDToken(t, u), "")
		if status != http.StatusOK {
			t.Fatalf("%s: sign-in HTTP %d", role, status)
		}
		sessions[role] = lr.SessionToken
	}
	const (
		all   = "admin policy-author approver auditor viewer operator"
		agent = "/v1/agents/ai-agent:%2F%2Fdev%2Fops%2Fx"
	)
	matrix := []struct{ method, path, allowed string }{
		{"GET", "/v1/agents", all},
		{"GET", agent, all},
		{"POST", "/v1/agents", "admin"},
		{"POST", agent + "/disable", "admin operator"},
		{"POST", agent + "/enable", "admin operator"},
		{"POST", agent + "/quarantine", "admin operator"},
		{"POST", agent + "/restrict", "admin operator"},
		{"POST", agent + "/revoke", "admin operator"},
		{"POST", agent + "/keys", "admin"},
		{"PATCH", agent, "admin"},
		{"DELETE", agent, "admin"},
		{"POST", "/v1/tokens/revoke", "admin operator"},
		{"GET", "/v1/keys", all},
		{"POST", "/v1/keys/rotate", "admin"},
		{"GET", "/v1/events", "admin auditor operator"},
		{"GET", agent + "/taints", all},
		{"POST", agent + "/taints/clear", "admin operator"},
		{"GET", agent + "/risk", all},
		{"GET", "/v1/monitor", all},
		{"POST", "/v1/monitor/rebuild", "admin operator"},
		{"GET", "/v1/incidents", all},
		{"GET", "/v1/incidents/inc_x", all},
		{"POST", "/v1/incidents/inc_x/ack", "admin operator"},
		{"POST", "/v1/incidents/inc_x/resolve", "admin operator"},
		{"GET", "/v1/approvals", all + " safety-reviewer"},
		{"GET", "/v1/approvals/apr_x", all + " safety-reviewer"},
		{"POST", "/v1/approvals/apr_x/approve", "admin approver safety-reviewer"},
		{"POST", "/v1/approvals/apr_x/reject", "admin approver safety-reviewer"},
		{"POST", "/v1/enforcement-points", "admin"},
		{"GET", "/v1/enforcement-points", all},
		{"POST", "/v1/enforcement-points/x/revoke", "admin"},
		{"POST", "/v1/policies", "admin policy-author"},
		{"GET", "/v1/policies", all},
		{"GET", "/v1/policies/activations", all},
		{"GET", "/v1/policies/shadow", all},
		{"PUT", "/v1/policies/shadow", "admin policy-author"},
		{"DELETE", "/v1/policies/shadow", "admin policy-author"},
		{"POST", "/v1/policies/rollback", "admin policy-author"},
		{"GET", "/v1/policies/sha256:x", all},
		{"POST", "/v1/policies/sha256:x/activate", "admin policy-author"},
		{"GET", "/v1/audit/checkpoints", "admin auditor"},
		{"GET", "/v1/audit/entries", "admin auditor"},
		{"GET", "/v1/audit/export", "admin auditor"},
		{"GET", "/v1/audit/proof/inclusion?index=0&size=1", "admin auditor"},
		{"GET", "/v1/audit/proof/consistency?old=1&new=1", "admin auditor"},
		{"GET", "/v1/audit/lineage?decision=dec_x", "admin auditor"},
		{"GET", "/v1/access", "admin"},
		{"POST", "/v1/access/bootstrap/rotate", "admin"},
		{"POST", "/v1/access/bootstrap/disable", "admin"},
		{"GET", "/v1/auth/whoami", all + " safety-reviewer"},
		{"GET", "/v1/grants", all},
		{"GET", "/v1/grants/grt_x", all},
		{"POST", "/v1/grants", "admin operator"},
		{"POST", "/v1/grants/grt_x/revoke", "admin operator"},
		{"POST", "/v1/tasks/study-1/complete", "admin operator"},
	}
	for _, m := range matrix {
		for role, tok := range sessions {
			if m.path == "/v1/access/bootstrap/rotate" && role == "admin" {
				continue // it works: done below, where its token is kept
			}
			code, body := call(t, w, tok, m.method, m.path, "{}")
			allowed := slices.Contains(strings.Fields(m.allowed), role)
			if allowed && (code == http.StatusForbidden && !strings.Contains(body, "two_person") || code == http.StatusUnauthorized) {
				t.Errorf("%s %s as %s: HTTP %d %s, want it allowed", m.method, m.path, role, code, body)
			}
			if !allowed && (code != http.StatusForbidden || !strings.Contains(body, "lacks the permission")) {
				t.Errorf("%s %s as %s: HTTP %d %s, want 403", m.method, m.path, role, code, body)
			}
		}
	}
}

// Once a person with the admin role has signed in, the bootstrap token can
// be disabled; rotated, the old one stops at once; a policy author's push
// is activated by another person when two_person_activation is set.
func TestBootstrapTokenAndTwoPersonActivation(t *testing.T) {
	t.Parallel()
	w, p := humansServer(t, func(c *humans.Config) { c.TwoPersonActivation = true })
	boot := w.AdminToken
	if code, body := call(t, w, boot, "POST", "/v1/access/bootstrap/disable", ""); code != http.StatusConflict || !strings.Contains(body, "no person with the admin role") {
		t.Fatalf("disabling before a human admin exists: HTTP %d %s", code, body)
	}
	_, admin := signIn(t, w, p.IDToken(t, people["admin"]), "")
	_, author := signIn(t, w, p.IDToken(t, people["policy-author"]), "")
	code, body := call(t, w, boot, "POST", "/v1/access/bootstrap/rotate", "")
	var rot struct{ Token string }
	if json.Unmarshal([]byte(body), &rot); code != http.StatusOK || rot.Token == "" {
		t.Fatalf("rotate: HTTP %d", code)
	}
	if code, _ := call(t, w, boot, "GET", "/v1/agents", ""); code != http.StatusUnauthorized {
		t.Fatalf("the old bootstrap token after rotation: HTTP %d", code)
	}
	if code, _ := call(t, w, rot.Token, "GET", "/v1/agents", ""); code != http.StatusOK {
		t.Fatalf("the new bootstrap token: HTTP %d", code)
	}
	if code, body := call(t, w, admin.SessionToken, "POST", "/v1/access/bootstrap/disable", ""); code != http.StatusOK {
		t.Fatalf("disable: HTTP %d %s", code, body)
	}
	if code, _ := call(t, w, rot.Token, "GET", "/v1/agents", ""); code != http.StatusUnauthorized {
		t.Fatalf("the disabled bootstrap token: HTTP %d", code)
	}
	if e := lastEvent(t, w, "access.bootstrap.disable"); e.Actor != admin.Principal.ID {
		t.Fatalf("the disabling is recorded as %s", e.Actor)
	}

	// Two people for a policy: the author pushes, another activates.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "policy.rego"), []byte("package warden.authz\n\ndefault allow := false\n"), 0o644)
	both, _ := json.Marshal(map[string]any{"files": map[string]string{"policy.rego": "package warden.authz\n\ndefault allow := false\n"},
		"message": "and activate it", "activate": true})
	if code, out := call(t, w, author.SessionToken, "POST", "/v1/policies", string(both)); code != http.StatusForbidden || !strings.Contains(out, "two_person") {
		t.Fatalf("the author pushed and activated at once: HTTP %d %s", code, out)
	}
	pushed := pushDir(t, w, author.SessionToken, dir)
	if code, body := call(t, w, author.SessionToken, "POST", "/v1/policies/"+pushed+"/activate", ""); code != http.StatusForbidden || !strings.Contains(body, "another person") {
		t.Fatalf("the author activated their own push: HTTP %d %s", code, body)
	}
	if code, body := call(t, w, admin.SessionToken, "POST", "/v1/policies/"+pushed+"/activate", ""); code != http.StatusOK {
		t.Fatalf("another person's activation: HTTP %d %s", code, body)
	}
}

// pushDir pushes the bundle in dir as bearer and returns its version.
func pushDir(t *testing.T, w *apptest.Instance, bearer, dir string) string {
	t.Helper()
	files := map[string]string{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		files[e.Name()] = string(b)
	}
	body, _ := json.Marshal(map[string]any{"files": files, "message": "two people"})
	code, out := call(t, w, bearer, "POST", "/v1/policies", string(body))
	var res struct {
		Version struct {
			ID string `json:"id"`
		} `json:"version"`
	}
	if json.Unmarshal([]byte(out), &res); (code != http.StatusCreated && code != http.StatusOK) || res.Version.ID == "" {
		t.Fatalf("push: HTTP %d %s", code, out)
	}
	return res.Version.ID
}

// lastEvent is the latest stored event of action.
func lastEvent(t *testing.T, w *apptest.Instance, action string) store.Event {
	t.Helper()
	evs, err := w.App.Store.Events(t.Context(), store.EventFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Action == action {
			return evs[i]
		}
	}
	t.Fatalf("no %s event", action)
	return store.Event{}
}

// The bootstrap token is no one in particular: with a person's vote it
// does not make two people.
func TestBootstrapTokenIsNotAPerson(t *testing.T) {
	t.Parallel()
	w, p := humansServer(t, nil)
	activate(t, w, map[string][]byte{"policy.rego": []byte("package warden.authz\n\nallow := true\n\nobligations[\"require_approvals\"] := {\"count\": 2, \"humans\": 2}\n")})
	ctx := t.Context()
	const id = "ai-agent://dev/plant/tuner"
	c, err := sdk.NewClient(w.URL, id, w.Register(t, id, "tuner"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d, err := w.App.Decide.Decide(ctx, decide.InProcess("gw", "warden"), &decide.Request{Token: tok.AccessToken, Action: "tools/call",
		Resource: decide.Resource{Kind: "mcp.tool", ID: "plc/set_setpoint"}})
	if err != nil || d.Approval == nil {
		t.Fatalf("%+v %v", d, err)
	}
	_, admin := signIn(t, w, p.IDToken(t, people["admin"]), "")
	for _, bearer := range []string{admin.SessionToken, w.AdminToken} {
		if code, body := call(t, w, bearer, "POST", "/v1/approvals/"+d.Approval.ID+"/approve", `{"reason": "ok"}`); code != http.StatusOK {
			t.Fatalf("vote: HTTP %d %s", code, body)
		}
	}
	if a, _ := w.App.Store.Approval(ctx, d.Approval.ID); a.Status != "pending" {
		t.Fatalf("one person and the bootstrap token made it %s", a.Status)
	}
}
