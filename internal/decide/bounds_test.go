package decide_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/decide"
)

// slowPolicy takes its whole timeout on the action "slow", evaluated or
// partially evaluated.
const slowPolicy = `package warden.authz

default allow := false

allow if {
	input.action == "slow"
	count([x | some x in numbers.range(1, 100000000)]) > 0
}
`

// post sends body to path of the running server as the admin, with ctx.
func (e *env) post(ctx context.Context, t *testing.T, path string, body any) (int, []byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, "POST", e.w.URL+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+e.w.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

func slowTargets(n int) []map[string]any {
	ts := make([]map[string]any, n)
	for i := range ts {
		ts[i] = map[string]any{"action": "slow", "resource": map[string]string{"kind": "mcp.tool", "id": "t"}}
	}
	return ts
}

func slowRequests(tok string, n int) []map[string]any {
	rs := make([]map[string]any, n)
	for i := range rs {
		rs[i] = map[string]any{"token": tok, "action": "slow", "resource": map[string]string{"kind": "mcp.tool", "id": "t"}}
	}
	return rs
}

// Attack: one may-allow or batch request with many actions whose
// evaluation is slow. The work one request does is bounded: fewer actions
// per may-allow call, and a budget for the whole request past which the
// rest is hidden or denied without being evaluated.
//
// Not parallel: its slow evaluations would take the CPU from the other
// tests' short policy timeouts.
func TestRequestWorkIsBounded(t *testing.T) {
	e := start(t, func(c *config.Config) { c.Decide.RequestBudget = 150 * time.Millisecond })
	e.activate(t, testBundle(slowPolicy))
	tok := e.agent(t, "ai-agent://dev/reader", "reader")
	p := e.w.App.Decide

	status, out, err := e.post(e.ctx, t, "/v1/decide/may-allow", map[string]any{"token": tok, "actions": slowTargets(decide.MaxMayAllowTargets + 1)})
	if err != nil || status != http.StatusBadRequest || !strings.Contains(string(out), "1 to 100 actions") {
		t.Fatalf("101 actions: HTTP %d %s %v", status, out, err)
	}

	before := decide.Evaluations(p)
	status, out, err = e.post(e.ctx, t, "/v1/decide/may-allow", map[string]any{"token": tok, "actions": slowTargets(decide.MaxMayAllowTargets)})
	var may struct {
		MayAllow []bool `json:"may_allow"`
	}
	if err != nil || status != http.StatusOK || json.Unmarshal(out, &may) != nil || len(may.MayAllow) != 100 || slices.Contains(may.MayAllow, true) {
		t.Fatalf("may-allow: HTTP %d %s %v", status, out, err)
	}
	if n := decide.Evaluations(p) - before; n >= 100 {
		t.Fatalf("may-allow evaluated %d actions: the budget did not stop it", n)
	}

	before = decide.Evaluations(p)
	status, out, err = e.post(e.ctx, t, "/v1/decide/batch", map[string]any{"requests": slowRequests(tok, 100)})
	var batch struct {
		Decisions []decide.Decision `json:"decisions"`
	}
	if err != nil || status != http.StatusOK || json.Unmarshal(out, &batch) != nil || len(batch.Decisions) != 100 {
		t.Fatalf("batch: HTTP %d %.300s %v", status, out, err)
	}
	if n := decide.Evaluations(p) - before; n >= 100 {
		t.Fatalf("the batch evaluated %d requests: the budget did not stop it", n)
	}
	last := batch.Decisions[99]
	if last.Outcome != "deny" || !slices.Equal(last.Reasons, []string{decide.ReasonBudgetExhausted}) || last.AuditIndex < 0 {
		t.Fatalf("the last of the batch: %+v, want a recorded deny for the spent budget", last)
	}
}

// Attack: send a heavy request and hang up. The work stops with the
// connection, for may-allow and for batches.
// Not parallel, as TestRequestWorkIsBounded.
func TestRequestWorkStopsWhenTheCallerGoes(t *testing.T) {
	e := start(t, func(c *config.Config) { c.Decide.RequestBudget = time.Minute })
	e.activate(t, testBundle(slowPolicy))
	tok := e.agent(t, "ai-agent://dev/reader", "reader")
	p := e.w.App.Decide
	for _, tc := range []struct {
		name, path string
		body       map[string]any
	}{
		{"may-allow", "/v1/decide/may-allow", map[string]any{"token": tok, "actions": slowTargets(100)}},
		{"batch", "/v1/decide/batch", map[string]any{"requests": slowRequests(tok, 100)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := decide.Evaluations(p)
			logSize, _ := e.w.App.Audit.Size(e.ctx)
			ctx, cancel := context.WithCancel(e.ctx)
			done := make(chan error, 1)
			go func() {
				_, _, err := e.post(ctx, t, tc.path, tc.body)
				done <- err
			}()
			waitFor(t, func() bool { return decide.Evaluations(p)-before >= 2 })
			cancel()
			if err := <-done; err == nil {
				t.Fatal("the request finished before the caller went away")
			}
			waitFor(t, func() bool { return decide.Running(p) == 0 })
			n := decide.Evaluations(p) - before
			if n >= 100 {
				t.Fatalf("%d of 100 evaluated after the caller went away", n)
			}
			// What was decided before the caller went away is recorded
			// (a decision made leaves its trace); nothing after.
			if after, _ := e.w.App.Audit.Size(e.ctx); after-logSize > n {
				t.Fatalf("%d decisions recorded for %d evaluated before the caller went away", after-logSize, n)
			}
		})
	}
}
