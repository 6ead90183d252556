package mcpgw_test

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"slices"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/enforce"
	"github.com/warden-run/warden/internal/enforce/mcpgw"
	"github.com/warden-run/warden/sdk"
)

// wrapped starts a wrap in front of this test binary's stdio server, for
// a prod agent (DPoP on every decision), deciding through the Warden
// server at decider's address, and connects a Go SDK client to it over
// pipes, as a desktop MCP client would over the wrap's stdio.
func wrapped(t *testing.T, e *env, server string) *mcp.ClientSession {
	t.Helper()
	cred, _, err := e.w.App.EnforcementPoints.Register(e.ctx, "admin:test", decide.Registration{Name: "desktop", Description: "test", Audience: "warden", Trust: []string{"session"}})
	if err != nil {
		t.Fatal(err)
	}
	const id = "ai-agent://prod/desktop-assistant"
	k := e.w.Register(t, id, "reader")
	c, err := sdk.NewClient(e.w.URL, id, k, sdk.WithDPoP())
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	t.Setenv("MCPGW_TEST_STDIO", "1")
	w, err := mcpgw.NewWrap("local", []string{exe, "-test.run=^$"}, mcpgw.Trusted, mcpgw.WrapDeps{
		Decider: enforce.Remote{Server: server, Credential: cred},
		Caller: func(ctx context.Context) (*enforce.Caller, error) {
			tok, err := c.Token(ctx)
			if err != nil {
				return nil, err
			}
			return &enforce.Caller{Token: tok.AccessToken, Agent: id}, nil
		},
		Proof: func(token string) (string, string, string, error) {
			p, err := k.DPoPProof("POST", server+"/v1/decide", token)
			return p, "POST", server + "/v1/decide", err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	toWrap, fromClient := io.Pipe()
	toClient, fromWrap := io.Pipe()
	go w.ServeStdio(e.ctx, toWrap, fromWrap)
	client := mcp.NewClient(&mcp.Implementation{Name: "desktop", Version: "1"}, &mcp.ClientOptions{Capabilities: &mcp.ClientCapabilities{}})
	s, err := client.Connect(e.ctx, &mcp.IOTransport{Reader: toClient, Writer: fromClient}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// `warden mcp wrap`: a desktop client's stdio server in front of a local
// MCP server, every call decided by the Warden server with the agent's
// own token and proof.
func TestWrap(t *testing.T) {
	e := start(t, nil)
	s := wrapped(t, e, e.w.URL)
	res, err := s.ListTools(e.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(res.Tools); !slices.Equal(got, []string{"env", "pid"}) {
		t.Fatalf("tools %v, want [env pid]: their own names, only what policy could allow", got)
	}
	if r, err := s.CallTool(e.ctx, &mcp.CallToolParams{Name: "pid"}); err != nil || r.IsError {
		t.Fatalf("allowed call: %v %v", r, err)
	}
	_, err = s.CallTool(e.ctx, &mcp.CallToolParams{Name: "wipe_disk"})
	if en := e.refusal(err, mcpgw.CodeDenied); en.EnforcementPoint != "desktop" || en.Agent != "ai-agent://prod/desktop-assistant" {
		t.Fatalf("audit entry %+v", en)
	}
}

// A wrap whose Warden server is gone denies everything.
func TestWrapWithoutWarden(t *testing.T) {
	e := start(t, nil)
	gone := httptest.NewServer(nil)
	gone.Close()
	s := wrapped(t, e, gone.URL)
	if res, err := s.ListTools(e.ctx, nil); err != nil || len(res.Tools) != 0 {
		t.Fatalf("tools without Warden: %+v %v", res, err)
	}
	_, err := s.CallTool(e.ctx, &mcp.CallToolParams{Name: "pid"})
	var rpc *jsonrpc.Error
	if !errors.As(err, &rpc) || rpc.Code != mcpgw.CodeDenied {
		t.Fatalf("a call without a decision: %v, want a denial", err)
	}
}
