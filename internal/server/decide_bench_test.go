package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/sdk"
)

// smallPolicy is a few rules, one of which reads the arguments: the
// policy of issue-sized deployments, where evaluation is cheap and the
// fixed cost of a decision decides its figure.
const smallPolicy = `package warden.authz

allow if {
	input.action == "tools/call"
	input.agent.roles[_] == "reader"
	startswith(input.resource.id, "kb/")
	count(input.args.q) < 200
}

deny contains "query_too_long" if count(input.args.q) >= 200
`

// BenchmarkDecideEndpoint is POST /v1/decide handled in process (no
// network): the enforcement point's credential, the body, the token, the
// input, the small policy's evaluation, the audit entry (async mode: its
// CPU, no sync wait) and the answer, one request at a time, arguments
// different in every request. cpu-µs counts the whole process's CPU per
// decision, background goroutines included (the audit writer, the tree).
// "evaluate" is the policy's evaluation alone on the same input, for the
// difference: the decision's fixed cost.
func BenchmarkDecideEndpoint(b *testing.B) {
	w := apptest.Start(b, func(c *config.Config) {
		c.Audit.Mode = "async"
		c.Monitor.Disabled = true
		c.Identity.TrustDomains["dev"] = config.TrustDomain{}
	})
	ctx := context.Background()
	v, _, _, err := w.App.Policies.Push(ctx, "admin:test", &policy.Bundle{Files: map[string][]byte{"policy.rego": []byte(smallPolicy)}}, "small")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := w.App.Policies.Activate(ctx, "admin:test", v.ID); err != nil {
		b.Fatal(err)
	}
	const agent = "ai-agent://dev/kb/reader"
	c, err := sdk.NewClient(w.URL, agent, w.Register(b, agent, "reader"))
	if err != nil {
		b.Fatal(err)
	}
	tok, err := c.Token(ctx)
	if err != nil {
		b.Fatal(err)
	}
	cred, _, err := w.App.EnforcementPoints.Register(ctx, "admin:test", decide.Registration{Name: "bench", Audience: "warden"})
	if err != nil {
		b.Fatal(err)
	}
	body := func(n int) string {
		return `{"token":"` + tok.AccessToken + `","action":"tools/call","resource":{"kind":"mcp.tool","id":"kb/search"},` +
			`"args":{"q":"query number ` + strconv.Itoa(n) + `"},"context":{"source":{"ip":"10.1.2.3"},"session":{"id":"s-1"}}}`
	}
	var seq int
	call := func() *httptest.ResponseRecorder {
		seq++
		r := httptest.NewRequest("POST", "/v1/decide", strings.NewReader(body(seq)))
		r.Header.Set("Authorization", "Bearer "+cred)
		r.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		w.App.Handler.ServeHTTP(rec, r)
		return rec
	}
	if rec := call(); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"allow"`) {
		b.Fatalf("%d %s", rec.Code, rec.Body.String())
	}
	b.Run("endpoint", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := cpuTime()
		for b.Loop() {
			if rec := call(); rec.Code != http.StatusOK {
				b.Fatal(rec.Code, rec.Body.String())
			}
		}
		b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/1000/float64(b.N), "cpu-µs")
	})
	// The input the endpoint built, as recorded, evaluated alone.
	var rec struct{ Entries []json.RawMessage }
	for deadline := time.Now().Add(5 * time.Second); len(rec.Entries) == 0; time.Sleep(10 * time.Millisecond) {
		r := httptest.NewRequest("GET", "/v1/audit/entries?kind=decision&limit=1", nil)
		r.Header.Set("Authorization", "Bearer "+w.AdminToken)
		out := httptest.NewRecorder()
		w.App.Handler.ServeHTTP(out, r)
		json.Unmarshal(out.Body.Bytes(), &rec)
		if time.Now().After(deadline) {
			b.Fatalf("no recorded decision: %s", out.Body.String())
		}
	}
	var e struct{ Input json.RawMessage }
	json.Unmarshal(rec.Entries[0], &e)
	dec := json.NewDecoder(bytes.NewReader(e.Input))
	dec.UseNumber()
	var input map[string]any
	if err := dec.Decode(&input); err != nil || input["args"] == nil {
		b.Fatalf("recorded input: %v %s", err, e.Input)
	}
	engine := w.App.Policies.Live().Active
	b.Run("evaluate", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := cpuTime()
		for b.Loop() {
			seq++
			input["args"] = map[string]any{"q": "query number " + strconv.Itoa(seq)}
			res, err := engine.Evaluate(ctx, input, time.Now().Truncate(time.Second))
			if err != nil || !res.Allow {
				b.Fatal(res, err)
			}
		}
		b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/1000/float64(b.N), "cpu-µs")
	})
}

// cpuTime is the process's CPU time so far, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
