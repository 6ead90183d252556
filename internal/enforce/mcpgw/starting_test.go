package mcpgw_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/enforce"
	"github.com/warden-run/warden/internal/enforce/mcpgw"
	"github.com/warden-run/warden/internal/policy"
)

// An upstream command slow to start (an npx package downloading) is given
// its start timeout, not the usual ten seconds: meanwhile lists leave it
// out and say it is starting, without waiting for it, and once it is up
// its tools are there.
func TestSlowUpstreamIsStarting(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gwURL := "http://" + ln.Addr().String() + "/mcp"
	e := &env{t: t, ctx: context.Background(), url: gwURL}
	e.w = apptest.Start(t, func(c *config.Config) { c.Identity.Resources = []string{gwURL} })
	v, _, _, err := e.w.App.Policies.Push(e.ctx, "admin:test", &policy.Bundle{Files: map[string][]byte{"policy.rego": []byte(testPolicy), "data.json": []byte(testData)}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.w.App.Policies.Activate(e.ctx, "admin:test", v.ID); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := mcpgw.Config{PublicURL: gwURL, UpstreamTimeout: 5 * time.Second, Servers: []mcpgw.Server{
		{Name: "docs", URL: serveMCP(t, docs()).URL, Trust: mcpgw.Trusted},
		// Slower than the ten seconds a URL gets, within a command's two minutes.
		{Name: "local", Command: []string{exe, "-test.run=^$"}, Env: map[string]string{"MCPGW_TEST_STDIO": "1", "MCPGW_TEST_SLOW_START": "20s"}, Trust: mcpgw.Trusted},
	}}
	e.gw, err = mcpgw.New(cfg, mcpgw.Deps{Decider: enforce.Local{Pipeline: e.w.App.Decide, Name: "mcp-gateway", Audiences: []string{gwURL}},
		Verifier: e.w.App.Verifier, Issuer: e.w.URL})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: e.gw.Handler()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); e.gw.Close() })
	go e.gw.Connect(e.ctx) // as warden serve does: in the background

	s := e.connectAt(e.agent("ai-agent://dev/reader", "reader"), nil, "2025-11-25")
	// docs is up in moments (on a busy machine, after a first list that
	// says it is starting too); local takes its twenty seconds.
	var res *mcp.ListToolsResult
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if res, err = s.ListTools(e.ctx, nil); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(names(res.Tools), "docs__report") || time.Now().After(deadline) {
			break
		}
	}
	if got := names(res.Tools); !slices.Equal(got, []string{"docs__report"}) {
		t.Fatalf("while local starts: %v", got)
	}
	// How many are starting, not which: an agent does not learn the
	// names of servers none of whose tools it may see.
	if n, _ := res.Meta[mcpgw.StartingKey].(float64); n != 1 {
		t.Fatalf("the list does not say one server is starting: %v", res.Meta)
	}
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if res, err = s.ListTools(e.ctx, nil); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(names(res.Tools), "local__pid") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("local never came up: %v %v", names(res.Tools), res.Meta)
		}
	}
	if res.Meta[mcpgw.StartingKey] != nil {
		t.Errorf("still starting once up: %v", res.Meta)
	}
	if r, err := s.CallTool(e.ctx, &mcp.CallToolParams{Name: "local__pid"}); err != nil || r.IsError {
		t.Fatalf("call: %v %v", r, err)
	}
}
