package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/sdk"
)

const apiPolicy = `package warden.authz

default allow := false

allow if "reader" in input.agent.roles
`

// pushPolicy pushes and activates a one-file bundle through the API.
func pushPolicy(t *testing.T, w *apptest.Instance, rego string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"files": map[string]string{"policy.rego": rego}, "message": "test", "activate": true})
	resp := adminDo(t, w, "POST", "/v1/policies", string(body))
	out := readAll(t, resp)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("push: HTTP %d %s", resp.StatusCode, out)
	}
	var res struct {
		Version struct {
			ID string `json:"id"`
		} `json:"version"`
	}
	json.Unmarshal([]byte(out), &res)
	return res.Version.ID
}

func agentToken(t *testing.T, w *apptest.Instance, id string, roles ...string) string {
	t.Helper()
	k := register(t, w, id, roles...)
	c, err := sdk.NewClient(w.URL, id, k)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

func post(t *testing.T, w *apptest.Instance, path, bearer, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", w.URL+path, strings.NewReader(body))
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, readAll(t, resp)
}

func TestDecideAPI(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	version := pushPolicy(t, w, apiPolicy)
	tok := agentToken(t, w, "ai-agent://dev/reader", "reader")

	// An enforcement point's credential, issued once.
	status, out := post(t, w, "/v1/enforcement-points", w.AdminToken, `{"name": "gw-1", "description": "test gateway", "audience": "warden", "trust": ["all"]}`)
	var reg struct {
		Credential string `json:"credential"`
		Name       string `json:"name"`
		Status     string `json:"status"`
	}
	json.Unmarshal([]byte(out), &reg)
	if status != http.StatusCreated || !strings.HasPrefix(reg.Credential, "wpep_") || reg.Name != "gw-1" || reg.Status != "active" {
		t.Fatalf("register: HTTP %d %s", status, out)
	}
	if status, _ := post(t, w, "/v1/enforcement-points", w.AdminToken, `{"name": "gw-1", "audience": "warden"}`); status != http.StatusConflict {
		t.Fatalf("the same name again: HTTP %d", status)
	}

	body := fmt.Sprintf(`{"token": %q, "action": "tools/call", "resource": {"kind": "mcp.tool", "id": "search/query"}, "args": {"q": "x"}}`, tok)
	status, out = post(t, w, "/v1/decide", reg.Credential, body)
	var d struct {
		ID            string   `json:"decision_id"`
		Outcome       string   `json:"outcome"`
		Reasons       []string `json:"reasons"`
		PolicyVersion string   `json:"policy_version"`
		AuditIndex    *int64   `json:"audit_index"`
	}
	json.Unmarshal([]byte(out), &d)
	if status != http.StatusOK || d.Outcome != "allow" || d.PolicyVersion != version || d.AuditIndex == nil || *d.AuditIndex < 0 || d.Reasons == nil {
		t.Fatalf("decide: HTTP %d %s", status, out)
	}
	e, _ := w.App.Audit.Read(context.Background(), *d.AuditIndex, *d.AuditIndex+1)
	if !strings.Contains(string(e[0]), `"enforcement_point":"gw-1"`) || !strings.Contains(string(e[0]), d.ID) {
		t.Fatalf("recorded %s", e[0])
	}

	// Who may ask: the enforcement point or an admin; not the agent itself, not nobody.
	for name, bearer := range map[string]string{"the agent's own token": tok, "no credential": "", "a made-up credential": "wpep_" + strings.Repeat("A", 43)} {
		if status, _ := post(t, w, "/v1/decide", bearer, body); status != http.StatusUnauthorized {
			t.Errorf("%s: HTTP %d, want 401", name, status)
		}
	}
	if status, _ := post(t, w, "/v1/decide", w.AdminToken, body); status != http.StatusOK {
		t.Errorf("admin: HTTP %d", status)
	}

	// Malformed requests say what is wrong, and are not recorded.
	size, _ := w.App.Audit.Size(context.Background())
	for _, tc := range []struct{ body, says string }{
		{`{"token": "x", "action": 5}`, `field \"action\"`},
		{`{"token": "x", "action": "a", "resource": {"kind": "k", "idd": "x"}}`, `unknown field \"idd\"`},
		{`{"token": "x", "action": "a", "resource": {"kind": "k"}, "args": [1]}`, "args"},
		{`{"token": "x", "action": "a"`, "ends in the middle"},
		{`{"token": "x", "action": "", "resource": {"kind": "k"}}`, "action"},
		{`{"token": "x", "action": "a", "resource": {"kind": "k"}, "context": {"source": {"ip": "nope"}}}`, "context.source.ip"},
		{`{"token": "x", "action": "a", "resource": {"kind": "k"}, "padding": "` + strings.Repeat("x", 1<<20) + `"}`, "larger than"},
	} {
		status, out := post(t, w, "/v1/decide", reg.Credential, tc.body)
		if status != http.StatusBadRequest || !strings.Contains(out, tc.says) {
			t.Errorf("%.60s: HTTP %d %s, want 400 saying %s", tc.body, status, out, tc.says)
		}
	}
	if after, _ := w.App.Audit.Size(context.Background()); after != size {
		t.Fatalf("malformed requests were recorded: %d entries, then %d", size, after)
	}

	// A batch: each request decided (and recorded) in its place; a malformed one gets its error.
	denied := fmt.Sprintf(`{"token": %q, "action": "tools/call", "resource": {"kind": "mcp.tool"}}`, agentToken(t, w, "ai-agent://dev/writer", "writer"))
	status, out = post(t, w, "/v1/decide/batch", reg.Credential, `{"requests": [`+body+`, `+denied+`, {"token": "x", "resource": {"kind": "k"}}]}`)
	var batch struct {
		Decisions []struct {
			Outcome string `json:"outcome"`
			Error   *struct {
				Code string `json:"error"`
			} `json:"error"`
		} `json:"decisions"`
	}
	json.Unmarshal([]byte(out), &batch)
	if status != http.StatusOK || len(batch.Decisions) != 3 || batch.Decisions[0].Outcome != "allow" || batch.Decisions[1].Outcome != "deny" ||
		batch.Decisions[2].Error == nil || batch.Decisions[2].Error.Code != "invalid_request" {
		t.Fatalf("batch: HTTP %d %s", status, out)
	}
	if status, _ := post(t, w, "/v1/decide/batch", reg.Credential, `{"requests": []}`); status != http.StatusBadRequest {
		t.Fatalf("an empty batch: HTTP %d", status)
	}

	// Revoked: refused at once.
	if status, out := post(t, w, "/v1/enforcement-points/gw-1/revoke", w.AdminToken, ""); status != http.StatusOK || !strings.Contains(out, `"revoked"`) {
		t.Fatalf("revoke: HTTP %d %s", status, out)
	}
	if status, _ := post(t, w, "/v1/decide", reg.Credential, body); status != http.StatusUnauthorized {
		t.Fatalf("a revoked credential: HTTP %d", status)
	}
}

func TestPolicyAPI(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	v1 := pushPolicy(t, w, apiPolicy)

	// Refusals: not compiling (400), failing tests (422, with the report), no message.
	for _, tc := range []struct {
		files  map[string]string
		status int
		says   string
	}{
		{map[string]string{"policy.rego": "package warden.authz\nallow if {"}, http.StatusBadRequest, "invalid_bundle"},
		{map[string]string{"policy.rego": apiPolicy, "policy_test.rego": "package warden.authz\ntest_x if allow with input as {}"}, http.StatusUnprocessableEntity, `"report"`},
		{map[string]string{"../policy.rego": apiPolicy}, http.StatusBadRequest, "not a clean relative path"},
	} {
		b, _ := json.Marshal(map[string]any{"files": tc.files, "message": "m"})
		resp := adminDo(t, w, "POST", "/v1/policies", string(b))
		if out := readAll(t, resp); resp.StatusCode != tc.status || !strings.Contains(out, tc.says) {
			t.Errorf("push %v: HTTP %d %s, want %d saying %s", tc.files, resp.StatusCode, out, tc.status, tc.says)
		}
	}
	resp := adminDo(t, w, "POST", "/v1/policies", `{"files": {"p.rego": "package warden.authz\nallow := true"}}`)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(readAll(t, resp), "message") {
		t.Fatalf("push without a message: HTTP %d", resp.StatusCode)
	}

	// Pushing the same content again changes nothing.
	b, _ := json.Marshal(map[string]any{"files": map[string]string{"policy.rego": apiPolicy}, "message": "again"})
	resp = adminDo(t, w, "POST", "/v1/policies", string(b))
	if out := readAll(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(out, `"created":false`) || !strings.Contains(out, v1) {
		t.Fatalf("the same content again: HTTP %d %s", resp.StatusCode, out)
	}

	// A second version, activated, then rolled back.
	v2 := pushPolicy(t, w, apiPolicy+"\ndeny contains \"closed\" if input.action == \"write\"\n")
	resp = adminDo(t, w, "GET", "/v1/policies/"+v2, "")
	if out := readAll(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(out, `"parent":"`+v1) || !strings.Contains(out, `deny contains`) {
		t.Fatalf("show: HTTP %d %s", resp.StatusCode, out)
	}
	resp = adminDo(t, w, "POST", "/v1/policies/rollback", "")
	if out := readAll(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(out, `"active":"`+v1) {
		t.Fatalf("rollback: HTTP %d %s", resp.StatusCode, out)
	}
	resp = adminDo(t, w, "POST", "/v1/policies/rollback", "")
	if out := readAll(t, resp); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("rollback past the first: HTTP %d %s", resp.StatusCode, out)
	}
	resp = adminDo(t, w, "POST", "/v1/policies/sha256:"+strings.Repeat("0", 64)+"/activate", "")
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("activate an unknown version: HTTP %d %s", resp.StatusCode, readAll(t, resp))
	}
	resp.Body.Close()
	resp = adminDo(t, w, "PUT", "/v1/policies/shadow", `{"version": "`+v2+`"}`)
	if out := readAll(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(out, `"shadow":"`+v2) {
		t.Fatalf("shadow: HTTP %d %s", resp.StatusCode, out)
	}
	resp = adminDo(t, w, "GET", "/v1/policies", "")
	if out := readAll(t, resp); resp.StatusCode != http.StatusOK || strings.Count(out, `"id":"sha256:`) != 2 || !strings.Contains(out, `"active":"`+v1) {
		t.Fatalf("list: HTTP %d %s", resp.StatusCode, out)
	}
}
