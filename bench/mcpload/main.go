// Command mcpload measures MCP tools/call load with the official Go SDK
// client: -c sessions call one tool in a loop for a while, and it reports
// the calls per second and latency percentiles of the calls that
// succeeded. With -agent and -key every HTTP request carries the agent's
// Warden access token (for -resource) and a fresh DPoP proof, as an agent
// behind the MCP gateway sends them.
//
// mcpload -serve ADDR serves the benchmark's upstream instead: an MCP
// server over Streamable HTTP at http://ADDR/mcp with one tool, echo.
//
// It is the load generator of bench/gateway-overhead.sh.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/sdk"
)

// Result is what one run measured.
type Result struct {
	Name       string  `json:"name"`
	Calls      int     `json:"calls"`
	Errors     int     `json:"errors"`
	Seconds    float64 `json:"seconds"`
	PerSecond  float64 `json:"per_second"`
	P50Micros  float64 `json:"p50_us"`
	P90Micros  float64 `json:"p90_us"`
	P99Micros  float64 `json:"p99_us"`
	Concurrent int     `json:"concurrency"`
}

func main() {
	var (
		serve, url, tool, args, name    string
		protocol, cpuProfile            string
		wardenURL, agent, key, resource string
		conc                            int
		dur, warm                       time.Duration
	)
	flag.StringVar(&serve, "serve", "", "serve the benchmark upstream on this address instead")
	flag.StringVar(&name, "name", "run", "name of the run in the output")
	flag.StringVar(&url, "url", "", "MCP endpoint")
	flag.StringVar(&tool, "tool", "echo", "tool to call")
	flag.StringVar(&args, "args", `{"text":"hello"}`, "the tool's arguments (JSON)")
	flag.StringVar(&wardenURL, "warden", "", "Warden server to get the agent's tokens from")
	flag.StringVar(&agent, "agent", "", "the agent's id")
	flag.StringVar(&key, "key", "", "the agent's private key file (JWK)")
	flag.StringVar(&resource, "resource", "", "the resource the tokens are for (the gateway's URL; default -url)")
	flag.StringVar(&protocol, "protocol", "", "MCP protocol version to ask for (default: the SDK's newest, falling back)")
	flag.IntVar(&conc, "c", 16, "concurrent MCP sessions, one caller each")
	flag.DurationVar(&dur, "d", 10*time.Second, "measured duration")
	flag.DurationVar(&warm, "warmup", 2*time.Second, "unmeasured duration first")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the measured duration to this file")
	flag.Parse()
	if serve != "" {
		fail(serveEcho(serve))
		return
	}
	if url == "" {
		fail(fmt.Errorf("-url is required"))
	}
	var callArgs map[string]any
	if err := json.Unmarshal([]byte(args), &callArgs); err != nil {
		fail(fmt.Errorf("-args: %w", err))
	}
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc * 2}}
	if agent != "" {
		k, err := sdk.LoadKey(key)
		if err != nil {
			fail(err)
		}
		if resource == "" {
			resource = url
		}
		c, err := sdk.NewClient(wardenURL, agent, k, sdk.WithResource(resource), sdk.WithDPoP())
		if err != nil {
			fail(err)
		}
		httpClient.Transport = c.Transport(httpClient.Transport)
	}
	ctx := context.Background()
	sessions := make([]*mcp.ClientSession, conc)
	for i := range sessions {
		client := mcp.NewClient(&mcp.Implementation{Name: "mcpload", Version: "1"}, &mcp.ClientOptions{Capabilities: &mcp.ClientCapabilities{}})
		s, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: httpClient, DisableStandaloneSSE: true},
			&mcp.ClientSessionOptions{ProtocolVersion: protocol})
		if err != nil {
			fail(fmt.Errorf("connect: %w", err))
		}
		defer s.Close()
		sessions[i] = s
	}
	var measuring, stop atomic.Bool
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	var firstErr error
	var wg sync.WaitGroup
	for _, s := range sessions {
		wg.Go(func() {
			var mine []time.Duration
			bad := 0
			var e1 error
			for !stop.Load() {
				t0 := time.Now()
				r, err := s.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: callArgs})
				d := time.Since(t0)
				if !measuring.Load() {
					continue
				}
				if err != nil || r.IsError {
					if e1 == nil {
						e1 = fmt.Errorf("%v %v", r, err)
					}
					bad++
					continue
				}
				mine = append(mine, d)
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += bad
			if firstErr == nil {
				firstErr = e1
			}
			mu.Unlock()
		})
	}
	time.Sleep(warm)
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			fail(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fail(err)
		}
	}
	measuring.Store(true)
	start := time.Now()
	time.Sleep(dur)
	measuring.Store(false)
	if cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	elapsed := time.Since(start)
	stop.Store(true)
	wg.Wait()
	if firstErr != nil {
		fmt.Fprintln(os.Stderr, "mcpload: first error:", firstErr)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(float64(len(lat)-1)*p)].Nanoseconds()) / 1000
	}
	json.NewEncoder(os.Stdout).Encode(Result{Name: name, Calls: len(lat), Errors: errs, Seconds: elapsed.Seconds(),
		PerSecond: float64(len(lat)) / elapsed.Seconds(), P50Micros: pct(0.50), P90Micros: pct(0.90), P99Micros: pct(0.99), Concurrent: conc})
}

// serveEcho serves the benchmark's upstream MCP server.
func serveEcho(addr string) error {
	s := mcp.NewServer(&mcp.Implementation{Name: "bench-upstream", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "echoes its text"}, func(_ context.Context, _ *mcp.CallToolRequest, a struct {
		Text string `json:"text"`
	}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: a.Text}}}, nil, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{SessionTimeout: 10 * time.Minute})
	mux := http.NewServeMux()
	mux.Handle("/mcp", h)
	return (&http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}).ListenAndServe()
}

func fail(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "mcpload:", err)
		os.Exit(1)
	}
}
