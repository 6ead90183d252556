package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/enforce/httpproxy"
	"github.com/warden-run/warden/internal/enforce/mcpgw"
	"github.com/warden-run/warden/internal/monitor"
	"github.com/warden-run/warden/sdk"
)

// What the gateway relays to an agent (tool results, prompts, HTTP
// answers) is summed into usage entries in the audit log, which the monitor
// reads as the agent's data volume.
func TestGatewayRecordsWhatItRelays(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const size = 300 << 10
	upstream := mcp.NewServer(&mcp.Implementation{Name: "records", Version: "1"}, nil)
	mcp.AddTool(upstream, &mcp.Tool{Name: "export"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: strings.Repeat("r", size)}}}, nil, nil
	})
	upstream.AddPrompt(&mcp.Prompt{Name: "brief"}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: strings.Repeat("p", size)}}}}, nil
	})
	up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return upstream }, nil))
	defer func() { up.CloseClientConnections(); up.Close() }()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`"` + strings.Repeat("h", size) + `"`))
	}))
	defer api.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	mcpURL := "http://" + addr + "/mcp"
	httpURL := "http://" + addr
	w := apptest.Start(t, func(c *config.Config) { c.Identity.Resources = []string{mcpURL, httpURL} })
	activate(t, w, map[string][]byte{"policy.rego": []byte("package warden.authz\nallow := true\n")})
	gw, err := w.App.NewGateway(app.GatewayConfig{Listen: addr, MCP: mcpgw.Config{PublicURL: mcpURL, UpstreamTimeout: 5 * time.Second,
		Servers: []mcpgw.Server{{Name: "records", URL: up.URL, Trust: mcpgw.Trusted}}},
		HTTP: httpproxy.Config{Resource: httpURL, Routes: []httpproxy.Route{{Name: "api", Prefix: "/api/", Upstream: api.URL + "/", Trust: "trusted"}}}})
	if err != nil {
		t.Fatal(err)
	}
	gctx, stop := context.WithCancel(ctx)
	ready, failed := make(chan string, 1), make(chan error, 1)
	go func() { failed <- w.App.RunGateway(gctx, gw, ready) }()
	select {
	case <-ready:
	case err := <-failed:
		t.Fatalf("the gateway did not start: %v", err)
	}
	const id = "ai-agent://dev/exporter"
	key := w.Register(t, id, "r")
	c, err := sdk.NewClient(w.URL, id, key, sdk.WithResource(mcpURL))
	if err != nil {
		t.Fatal(err)
	}
	hc, err := sdk.NewClient(w.URL, id, key, sdk.WithResource(httpURL))
	if err != nil {
		t.Fatal(err)
	}
	s, err := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: mcpURL, HTTPClient: &http.Client{Transport: c.Transport(nil)}, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if r, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "records__export"}); err != nil || r.IsError {
			t.Fatalf("the call: %v %v", r, err)
		}
	}
	if _, err := s.GetPrompt(ctx, &mcp.GetPromptParams{Name: "records__brief"}); err != nil {
		t.Fatalf("the prompt: %v", err)
	}
	s.Close()
	for range 2 {
		resp, err := (&http.Client{Transport: hc.Transport(nil)}).Get(httpURL + "/api/export")
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || n < size {
			t.Fatalf("the HTTP answer: %d, %d bytes", resp.StatusCode, n)
		}
	}
	stop() // the gateway writes what it has summed as it stops
	<-failed
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _ := w.App.Audit.Size(ctx)
		data, _ := w.App.Audit.Read(ctx, 0, n)
		for _, d := range data {
			e, _ := audit.DecodeEntry(d)
			if e == nil || e.Kind != audit.KindUsage || e.Agent != id {
				continue
			}
			var u struct{ Bytes, Results int64 }
			json.Unmarshal(e.Detail, &u)
			if u.Results != 6 || u.Bytes < 6*size {
				t.Fatalf("usage %s: want 6 results (3 tool results, 1 prompt, 2 HTTP answers) of at least %d bytes", e.Detail, size)
			}
			if ev, ok := monitor.Decode(e); !ok || ev.Kind != monitor.EventUsage || ev.Bytes != u.Bytes {
				t.Fatalf("the monitor reads it as %+v (%v)", ev, ok)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no usage entry for the agent")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
