package app_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/sdk"
)

// A gateway of its own (warden gateway) decides as one more replica of the
// Warden servers, on their PostgreSQL store: an agent with a token from a
// server calls through it, and the decision is in the shared audit log.
func TestGatewayAsAReplica(t *testing.T) {
	t.Parallel()
	dsn := os.Getenv("WARDEN_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("set WARDEN_TEST_POSTGRES to run the gateway replica test against PostgreSQL")
	}
	ctx := context.Background()
	upstream := mcp.NewServer(&mcp.Implementation{Name: "tools", Version: "1"}, nil)
	mcp.AddTool(upstream, &mcp.Tool{Name: "hello"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "hello"}}}, nil, nil
	})
	up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return upstream }, nil))
	defer func() { up.CloseClientConnections(); up.Close() }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gwFile := filepath.Join(t.TempDir(), "gateway.yaml")
	os.WriteFile(gwFile, []byte("listen: "+ln.Addr().String()+"\nservers:\n  - {name: tools, url: \""+up.URL+"\", trust: trusted}\n"), 0o600)

	db := apptest.FreshPostgres(t, dsn)
	master := filepath.Join(t.TempDir(), "master.key")
	server := apptest.Start(t, func(c *config.Config) {
		c.Store, c.Identity.MasterKeyFile, c.Gateway = db, master, gwFile
		if _, err := app.LoadGateway(c); err != nil {
			t.Fatal(err)
		}
	})
	v, _, _, err := server.App.Policies.Push(ctx, "admin:test", &policy.Bundle{Files: map[string][]byte{"policy.rego": []byte(
		"package warden.authz\nallow if input.resource.id == \"tools/hello\"\n")}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.App.Policies.Activate(ctx, "admin:test", v.ID); err != nil {
		t.Fatal(err)
	}

	// The gateway process: the same configuration, its own data directory.
	cfg := server.Config
	cfg.Data = filepath.Join(t.TempDir(), "gateway-data")
	gc, err := app.LoadGateway(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // the gateway listens on it itself
	replica, err := app.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close()
	gw, err := replica.NewGateway(*gc)
	if err != nil {
		t.Fatal(err)
	}
	gctx, stop := context.WithCancel(ctx)
	defer stop()
	ready := make(chan string, 1)
	failed := make(chan error, 1)
	go func() { failed <- replica.RunGateway(gctx, gw, ready) }()
	select {
	case <-ready:
	case err := <-failed:
		t.Fatalf("the gateway did not start: %v", err)
	}

	const id = "ai-agent://dev/through-the-replica"
	k := server.Register(t, id, "r")
	c, err := sdk.NewClient(server.URL, id, k, sdk.WithResource(gc.MCP.PublicURL))
	if err != nil {
		t.Fatal(err)
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil)
	var s *mcp.ClientSession
	deadline := time.Now().Add(3 * time.Second)
	for {
		// The replica learns of the new agent through the change feed.
		s, err = client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: gc.MCP.PublicURL, HTTPClient: &http.Client{Transport: c.Transport(nil)}, MaxRetries: -1}, nil)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "tools__hello"})
	if err != nil || r.IsError {
		t.Fatalf("call through the replica: %v %v", r, err)
	}
	// The decision is in the one audit log the server reads.
	waitFor(t, func() error {
		n, err := server.App.Audit.Size(ctx)
		if err != nil {
			return err
		}
		data, err := server.App.Audit.Read(ctx, 0, n)
		if err != nil {
			return err
		}
		for _, d := range data {
			if e, _ := audit.DecodeEntry(d); e != nil && e.Kind == audit.KindDecision && e.Agent == id && e.EnforcementPoint == app.GatewayPEP {
				return nil
			}
		}
		return errors.New("the decision is not in the log yet")
	})
}

// Envoy's authorization server speaks plain gRPC: off loopback, only when
// the configuration says something else protects it (insecure: true).
func TestExtAuthzPlainGRPCOffLoopback(t *testing.T) {
	w := apptest.Start(t, nil)
	gc, err := app.ParseGatewayConfig([]byte("listen: 127.0.0.1:0\next_authz: {listen: '0.0.0.0:0', resource: 'https://mesh.example'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := w.App.NewGateway(gc)
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.App.RunGateway(ctx, gw, nil); err == nil || !strings.Contains(err.Error(), "plain gRPC") {
		t.Fatalf("RunGateway: %v", err)
	}
}
