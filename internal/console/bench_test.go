package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/config"
)

// benchInput is a recorded input of about 1 KB, as the gateway's are.
const benchInput = `{"action":"tools/call","agent":{"id":%q,"roles":["trader"],"trust_domain":"prod","owner":"team-%d","status":"active"},` +
	`"resource":{"kind":"mcp.tool","id":%q,"attributes":{"egress":false,"read_only":true,"sensitivity":"internal"}},` +
	`"args":{"symbol":"ACME","qty":%d,"account":"acct-%d","note":"rebalance the portfolio within the daily limits"},` +
	`"context":{"time":{"hour":9,"weekday":"Friday"},"network":{"ip":"10.0.3.17"},"risk":{"score":%d,"level":"low","signals":[]},` +
	`"session":{"id":"s-%d","taints":[]},"provenance":{"read_untrusted":false,"forgotten":false},"token":{"jti":"tok-%d","delegated":false}},` +
	`"enforcement_point":{"name":"finance-gw","kind":"mcp"},"policy":{"data_version":"v17"}}`

// consoleWorld is a server with 1,000 agents and an audit log of n
// decisions spread over the last two hours, signed in.
func consoleWorld(b *testing.B, n int) (*apptest.Instance, *browser) {
	w := apptest.Start(b, func(c *config.Config) { c.Audit.CheckpointInterval = 100 * time.Millisecond })
	ctx := context.Background()
	const agents = 1000
	for i := range agents {
		w.Register(b, fmt.Sprintf("ai-agent://prod/finance/agent-%04d", i), "trader")
	}
	be := w.App.Audit.Backend()
	start := time.Now().Add(-2 * time.Hour)
	step := 2 * time.Hour / time.Duration(n)
	batch := make([]*audit.Entry, 0, 1024)
	for i := range n {
		agent := fmt.Sprintf("ai-agent://prod/finance/agent-%04d", i*7919%agents)
		res := fmt.Sprintf("finance/tool-%02d", i%50)
		e := &audit.Entry{Kind: audit.KindDecision, Time: start.Add(time.Duration(i) * step), DecisionID: fmt.Sprintf("dec_%012d", i),
			Agent: agent, Action: "tools/call", Resource: []byte(fmt.Sprintf(`{"kind":"mcp.tool","id":%q}`, res)),
			Outcome: "allow", EnforcementPoint: "finance-gw", PolicyVersion: "sha256:5e1f",
			Input: []byte(fmt.Sprintf(benchInput, agent, i%40, res, i%1000, i%300, i%100, i%5000, i))}
		if i%4 == 0 {
			e.Outcome, e.Reasons = "deny", []string{fmt.Sprintf("finance.limit_%d", i%7)}
		}
		batch = append(batch, e)
		if len(batch) == cap(batch) || i == n-1 {
			// Straight to the backend: building the log is not measured.
			if err := be.Append(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	// Wait until the log is integrated and checkpointed, and the monitor
	// has read it all, so that neither runs beside what is measured.
	for deadline := time.Now().Add(10 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		size, _ := w.App.Audit.Size(ctx)
		cp, err := w.App.Audit.Checkpoint(ctx)
		caught := w.App.Monitor == nil || w.App.Monitor.Stats().Position >= size-1
		if err == nil && cp.Size == size && caught {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the log was not integrated in time")
		}
	}
	br := newBrowser(b, w.URL)
	if res, _ := br.signIn(w.AdminToken); res.StatusCode != http.StatusOK {
		b.Fatalf("sign-in: %d", res.StatusCode)
	}
	return w, br
}

// BenchmarkConsolePages renders each page over HTTP with 1,000 agents and
// 1,000,000 audit entries (WARDEN_BENCH_ENTRIES to change the size).
func BenchmarkConsolePages(b *testing.B) {
	n := 1_000_000
	if testing.Short() {
		n = 10_000
	}
	w, br := consoleWorld(b, n)
	size, _ := w.App.Audit.Size(context.Background())
	middle := size / 2
	for middle%4 != 0 { // a denied decision
		middle++
	}
	agent := "ai-agent://prod/finance/agent-0421"
	pages := []struct{ name, path string }{
		{"overview", "/ui/"},
		{"agents", "/ui/agents"},
		{"agents-search", "/ui/agents?q=agent-04&status=active"},
		{"agent", "/ui/agent?id=" + url.QueryEscape(agent)},
		{"decisions", "/ui/decisions"},
		{"decisions-denied", "/ui/decisions?outcome=deny&reason=finance.limit_3"},
		{"decisions-agent", "/ui/decisions?agent=" + url.QueryEscape(agent)},
		{"decisions-resource-hour-ago", "/ui/decisions?resource=tool-07&until=" + url.QueryEscape(time.Now().Add(-time.Hour).UTC().Format(time.RFC3339))},
		{"decision-proof", fmt.Sprintf("/ui/decisions/%d", middle)},
		{"approvals", "/ui/approvals"},
		{"incidents", "/ui/incidents"},
		{"policies", "/ui/policies"},
		{"audit", "/ui/audit"},
	}
	for _, p := range pages {
		b.Run(p.name, func(b *testing.B) {
			for b.Loop() {
				res, body := br.do("GET", p.path, nil)
				if res.StatusCode != http.StatusOK || strings.Contains(body, "NOT VERIFIED") {
					b.Fatalf("%s: %d\n%s", p.path, res.StatusCode, body)
				}
			}
		})
	}
}
