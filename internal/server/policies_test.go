package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/policy"
)

// pushSecret stands for what a bundle may hold that the record must not:
// the audit log keeps who pushed what and why it was refused, never the
// bundle's content.
const pushSecret = "push-secret-5d1e"

func pushBody(t *testing.T, files map[string]string, message string) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"files": files, "message": message})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// refusals are the policy.push_refused entries of the audit log, oldest
// first, each as decoded and as written.
func refusals(t *testing.T, w *apptest.Instance) (entries []map[string]any, raws []string) {
	t.Helper()
	resp := adminDo(t, w, "GET", "/v1/audit/entries?kind=policy&limit=1000", "")
	var out struct {
		Entries []json.RawMessage `json:"entries"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, raw := range out.Entries {
		var e map[string]any
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatal(err)
		}
		if e["action"] == "policy.push_refused" {
			entries, raws = append(entries, e), append(raws, string(raw))
		}
	}
	return entries, raws
}

// nextRefusal waits for the audit log to hold more than n refusals (the
// log's relay may not lead yet right after the start) and returns the
// newest.
func nextRefusal(t *testing.T, w *apptest.Instance, n int) (entry map[string]any, raw string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		entries, raws := refusals(t, w)
		if len(entries) > n {
			return entries[len(entries)-1], raws[len(raws)-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no policy.push_refused entry after the %d there were", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Every push is in the audit log, refused ones included, with why and
// without the bundle's content; before this, a refused push left no
// record at all.
func TestRefusedPushesAreRecorded(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, func(c *config.Config) { c.Policy.Limits.DataBytes = 1024 })
	policyRego := "package warden.authz\n\nallow if input.args.token == \"" + pushSecret + "\"\n"
	cases := []struct {
		name   string
		body   string
		status int
		// detail holds what the entry's detail must say.
		detail map[string]any
		// target says whether the entry names the bundle's digest.
		target bool
	}{
		{"does not parse", pushBody(t, map[string]string{"policy.rego": "package warden.authz\n\nallow if {\n\tinput.x == \"" + pushSecret + "\"\n"}, "broken"),
			http.StatusBadRequest, map[string]any{"reason": "invalid_bundle", "message": "broken", "files": 1.0}, true},
		{"tests fail", pushBody(t, map[string]string{"policy.rego": policyRego,
			"policy_test.rego": "package warden.authz_test\n\nimport data.warden.authz\n\ntest_closed if not authz.allow with input as {\"args\": {\"token\": \"" + pushSecret + "\"}}\n"}, "failing"),
			http.StatusUnprocessableEntity, map[string]any{"reason": "tests_failed", "tests_failed": 1.0, "cases_failed": 0.0}, true},
		{"data over the limit", pushBody(t, map[string]string{"policy.rego": policyRego, "data.json": `{"secret": "` + pushSecret + strings.Repeat("x", 2048) + `"}`}, "big data"),
			http.StatusBadRequest, map[string]any{"reason": "invalid_bundle", "limit": "policy.limits.data_bytes", "max": 1024.0}, true},
		{"not JSON", `{"files": {"policy.rego": "` + pushSecret, http.StatusBadRequest, map[string]any{"reason": "invalid_request"}, false},
		{"no message", pushBody(t, map[string]string{"policy.rego": policyRego}, ""), http.StatusBadRequest, map[string]any{"reason": "invalid_request"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, _ := refusals(t, w)
			resp := adminDo(t, w, "POST", "/v1/policies", c.body)
			if resp.StatusCode != c.status {
				t.Fatalf("push: %d %s, want %d", resp.StatusCode, readAll(t, resp), c.status)
			}
			resp.Body.Close()
			e, raw := nextRefusal(t, w, len(before))
			if strings.Contains(raw, pushSecret) {
				t.Fatalf("the record holds the bundle's content: %s", raw)
			}
			if e["actor"] != "admin:bootstrap" {
				t.Errorf("actor %v", e["actor"])
			}
			detail, _ := e["detail"].(map[string]any)
			for k, want := range c.detail {
				if detail[k] != want {
					t.Errorf("detail.%s = %v, want %v (entry %s)", k, detail[k], want, raw)
				}
			}
			if target, _ := e["target"].(string); c.target != strings.HasPrefix(target, "sha256:") {
				t.Errorf("target %q, want a digest: %v", target, c.target)
			}
		})
	}
	t.Run("where OPA found the problem", func(t *testing.T) {
		before, _ := refusals(t, w)
		resp := adminDo(t, w, "POST", "/v1/policies", pushBody(t, map[string]string{"policy.rego": "package warden.authz\n\nallow if {\n"}, "broken again"))
		resp.Body.Close()
		e, raw := nextRefusal(t, w, len(before))
		where, _ := e["detail"].(map[string]any)["where"].([]any)
		if len(where) == 0 || !strings.HasPrefix(where[0].(string), "policy.rego:") || !strings.Contains(where[0].(string), "rego_parse_error") {
			t.Fatalf("where %v, want the file, line and code (entry %s)", where, raw)
		}
	})
}

// While every test slot is taken, a push is refused at once as busy (503
// with Retry-After), before its body is read, and the refusal recorded:
// three pushes at once took 5.5 GB before there was a limit.
func TestPushWhileBusy(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, func(c *config.Config) { c.Policy.Tests.Concurrency = 1 })
	slot, err := w.App.Policies.TryTestSlot()
	if err != nil {
		t.Fatal(err)
	}
	body := pushBody(t, map[string]string{"policy.rego": "package warden.authz\n\nallow := false\n"}, "while busy")
	resp := adminDo(t, w, "POST", "/v1/policies", body)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("push while busy: %d (Retry-After %q) %s, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), readAll(t, resp))
	}
	if got := readAll(t, resp); !strings.Contains(got, `"busy"`) || !strings.Contains(got, "policy.tests.concurrency") {
		t.Fatalf("answer %s, want the busy code and the setting", got)
	}
	if e, raw := nextRefusal(t, w, 0); e["detail"].(map[string]any)["reason"] != policy.RefusedBusy {
		t.Fatalf("recorded %s, want reason busy", raw)
	}
	resp = adminDo(t, w, "POST", "/v1/policies/sha256:"+strings.Repeat("0", 64)+"/activate", "")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("activation while busy: %d %s, want 503", resp.StatusCode, readAll(t, resp))
	}
	resp.Body.Close()
	slot.Release()
	resp = adminDo(t, w, "POST", "/v1/policies", body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("push once free: %d %s", resp.StatusCode, readAll(t, resp))
	}
	resp.Body.Close()
}
