package app_test

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/tracing"
	"github.com/warden-run/warden/sdk"
)

// collectedSpan is a span as an OTLP collector received it.
type collectedSpan struct {
	name, trace, id, parent string
	attrs                   map[string]string
}

// collector is an OTLP/HTTP trace receiver in the test's process: it
// decodes what the exporter sends, as a collector would.
type collector struct {
	mu    sync.Mutex
	spans []collectedSpan
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "not an OTLP trace export", http.StatusBadRequest)
		return
	}
	b, _ := io.ReadAll(r.Body)
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				cs := collectedSpan{name: s.Name, trace: hex.EncodeToString(s.TraceId), id: hex.EncodeToString(s.SpanId),
					parent: hex.EncodeToString(s.ParentSpanId), attrs: map[string]string{}}
				for _, a := range s.Attributes {
					cs.attrs[a.Key] = a.Value.GetStringValue()
				}
				c.spans = append(c.spans, cs)
			}
		}
	}
	c.mu.Unlock()
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

func (c *collector) trace(id string) []collectedSpan {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []collectedSpan
	for _, s := range c.spans {
		if s.trace == id {
			out = append(out, s)
		}
	}
	return out
}

// withTraceparent sends the agent's own trace context with every request.
type withTraceparent struct {
	base http.RoundTripper
	tp   string
}

func (t withTraceparent) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("traceparent", t.tp)
	return t.base.RoundTrip(r)
}

// An agent's tool call is one trace, exported to an OTLP collector: the
// agent's span, the gateway's span for the call under it, the decision's
// under that (with the decision id of the audit entry), and the trace
// context passed on to the upstream, which sees the same trace.
func TestTraceOfAnAction(t *testing.T) {
	ctx := context.Background()
	col := &collector{}
	otlp := httptest.NewServer(col)
	defer otlp.Close()

	var seenMu sync.Mutex
	var seen []string // traceparent headers the upstream received
	upstream := mcp.NewServer(&mcp.Implementation{Name: "tools", Version: "1"}, nil)
	mcp.AddTool(upstream, &mcp.Tool{Name: "hello"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "hello"}}}, nil, nil
	})
	mcpHandler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return upstream }, nil)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tp := r.Header.Get("traceparent"); tp != "" {
			seenMu.Lock()
			seen = append(seen, tp)
			seenMu.Unlock()
		}
		mcpHandler.ServeHTTP(w, r)
	}))
	defer func() { up.CloseClientConnections(); up.Close() }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gwAddr := ln.Addr().String()
	ln.Close()
	gwFile := filepath.Join(t.TempDir(), "gateway.yaml")
	os.WriteFile(gwFile, []byte("listen: "+gwAddr+"\nservers:\n  - {name: tools, url: \""+up.URL+"\", trust: trusted}\n"), 0o600)
	var gc *app.GatewayConfig
	w := apptest.Start(t, func(c *config.Config) {
		c.Gateway, c.Tracing.Endpoint = gwFile, otlp.URL
		if gc, err = app.LoadGateway(c); err != nil {
			t.Fatal(err)
		}
	})
	v, _, _, err := w.App.Policies.Push(ctx, "admin:test", &policy.Bundle{Files: map[string][]byte{"policy.rego": []byte(
		"package warden.authz\nallow if input.resource.id == \"tools/hello\"\n")}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.App.Policies.Activate(ctx, "admin:test", v.ID); err != nil {
		t.Fatal(err)
	}
	gw, err := w.App.NewGateway(*gc)
	if err != nil {
		t.Fatal(err)
	}
	gctx, stop := context.WithCancel(ctx)
	defer stop()
	ready, failed := make(chan string, 1), make(chan error, 1)
	go func() { failed <- w.App.RunGateway(gctx, gw, ready) }()
	select {
	case <-ready:
	case err := <-failed:
		t.Fatalf("the gateway did not start: %v", err)
	}

	const id = "ai-agent://dev/traced"
	k := w.Register(t, id, "r")
	c, err := sdk.NewClient(w.URL, id, k, sdk.WithResource(gc.MCP.PublicURL))
	if err != nil {
		t.Fatal(err)
	}
	const traceID, agentSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	client := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil)
	s, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: gc.MCP.PublicURL,
		HTTPClient: &http.Client{Transport: withTraceparent{c.Transport(nil), "00-" + traceID + "-" + agentSpan + "-01"}}, MaxRetries: -1},
		&mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "tools__hello"}); err != nil || r.IsError {
		t.Fatalf("call: %v %v", r, err)
	}

	var call, decision collectedSpan
	waitFor(t, func() error {
		tracing.Flush(ctx)
		for _, sp := range col.trace(traceID) {
			switch sp.name {
			case "mcp tools/call":
				call = sp
			case "warden.decide":
				if sp.attrs["warden.action"] == "tools/call" {
					decision = sp
				}
			}
		}
		if call.id == "" || decision.id == "" {
			return errors.New("the call's spans have not reached the collector")
		}
		return nil
	})
	if call.parent != agentSpan {
		t.Errorf("the gateway's span is not under the agent's: parent %q", call.parent)
	}
	if decision.parent != call.id {
		t.Errorf("the decision's span is not under the call's: parent %q, call %q", decision.parent, call.id)
	}
	if e := w.Decision(t, decision.attrs["warden.decision_id"]); e.Agent != id || e.Outcome != "allow" || e.EnforcementPoint != app.GatewayPEP {
		t.Errorf("the span's decision: %+v", e)
	}
	if decision.attrs["warden.outcome"] != "allow" || decision.attrs["warden.agent"] != id {
		t.Errorf("decision span attributes: %v", decision.attrs)
	}
	seenMu.Lock()
	defer seenMu.Unlock()
	passed := false
	for _, tp := range seen {
		passed = passed || strings.HasPrefix(tp, "00-"+traceID+"-")
	}
	if !passed {
		t.Errorf("the upstream did not get the trace: traceparent headers %q", seen)
	}
}
