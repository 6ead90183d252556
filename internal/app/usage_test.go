package app_test

import (
	"context"
	"encoding/json"
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
	"github.com/warden-run/warden/internal/enforce/mcpgw"
	"github.com/warden-run/warden/internal/monitor"
	"github.com/warden-run/warden/sdk"
)

// What the MCP gateway relays to an agent is summed into usage entries in
// the audit log, which the monitor reads as the agent's data volume.
func TestGatewayRecordsWhatItRelays(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const size = 300 << 10
	upstream := mcp.NewServer(&mcp.Implementation{Name: "records", Version: "1"}, nil)
	mcp.AddTool(upstream, &mcp.Tool{Name: "export"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: strings.Repeat("r", size)}}}, nil, nil
	})
	up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return upstream }, nil))
	defer func() { up.CloseClientConnections(); up.Close() }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	mcpURL := "http://" + addr + "/mcp"
	w := apptest.Start(t, func(c *config.Config) { c.Identity.Resources = []string{mcpURL} })
	activate(t, w, map[string][]byte{"policy.rego": []byte("package warden.authz\nallow := true\n")})
	gw, err := w.App.NewGateway(app.GatewayConfig{Listen: addr, MCP: mcpgw.Config{PublicURL: mcpURL, UpstreamTimeout: 5 * time.Second,
		Servers: []mcpgw.Server{{Name: "records", URL: up.URL, Trust: mcpgw.Trusted}}}})
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
	c, err := sdk.NewClient(w.URL, id, w.Register(t, id, "r"), sdk.WithResource(mcpURL))
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
	s.Close()
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
			if u.Results != 3 || u.Bytes < 3*size {
				t.Fatalf("usage %s: want 3 results of at least %d bytes", e.Detail, size)
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
