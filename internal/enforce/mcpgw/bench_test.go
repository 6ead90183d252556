package mcpgw_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// BenchmarkGatewayCall is one agent's tools/call through the gateway, one
// call at a time, as bench/gateway-overhead.sh measures it over loopback:
// the official Go SDK client with a token and a fresh DPoP proof on every
// request, the gateway's authentication, the decision with its durable
// audit entry, and the call to the upstream, on a session of protocol
// 2025-11-25 (the gateway's own tools/call path). "direct" is the same call
// straight to the upstream.
func BenchmarkGatewayCall(b *testing.B) {
	e := start(b, nil)
	prod := e.agent("ai-agent://prod/bench", "reader")
	through := e.connectAt(prod, nil, "2025-11-25")
	client := mcp.NewClient(&mcp.Implementation{Name: "direct", Version: "1"}, &mcp.ClientOptions{Capabilities: &mcp.ClientCapabilities{}})
	direct, err := client.Connect(e.ctx, &mcp.StreamableClientTransport{Endpoint: e.market.URL}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer direct.Close()
	for _, c := range []struct {
		name string
		s    *mcp.ClientSession
		tool string
	}{{"direct", direct, "get_quote"}, {"gateway", through, "market__get_quote"}} {
		b.Run(c.name, func(b *testing.B) {
			var mu sync.Mutex
			var ds []time.Duration
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				if _, err := c.s.CallTool(e.ctx, &mcp.CallToolParams{Name: c.tool, Arguments: quoteArgs{"ACME"}}); err != nil {
					b.Fatal(err)
				}
				mu.Lock()
				ds = append(ds, time.Since(t0))
				mu.Unlock()
			}
			b.StopTimer()
			slices.Sort(ds)
			b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), "p50-µs")
		})
	}
}
