package mcpgw

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// relayServer is an upstream whose tools exercise the relay: "ping" pings
// the caller during the call, "pause" closes the call's event stream and
// answers after the caller has resumed it, "fail" answers with a JSON-RPC
// error.
func relayServer() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "relay", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "ping"}, func(ctx context.Context, r *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		text := "pong"
		if err := r.Session.Ping(ctx, nil); err != nil {
			text = "no pong: " + err.Error()
		}
		if _, err := r.Session.ListRoots(ctx, nil); err == nil {
			text += ", and roots"
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "pause"}, func(ctx context.Context, r *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		r.Extra.CloseSSEStream(mcp.CloseSSEStreamArgs{RetryAfter: 20 * time.Millisecond})
		time.Sleep(100 * time.Millisecond)
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "resumed"}}}, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "report"}, reportTool)
	mcp.AddTool(s, &mcp.Tool{Name: "whoami"}, func(_ context.Context, r *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: r.Session.ID()}}}, nil, nil
	})
	s.AddTool(&mcp.Tool{Name: "fail", InputSchema: json.RawMessage(`{"type":"object"}`)}, func(ctx context.Context, r *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return nil, &jsonrpc.Error{Code: -32099, Message: "the upstream's own error"}
	})
	return s
}

// swappable serves with the handler it holds, which a test may replace
// (an upstream restarted at the same address).
type swappable struct{ h atomic.Pointer[http.Handler] }

func (s *swappable) ServeHTTP(w http.ResponseWriter, r *http.Request) { (*s.h.Load()).ServeHTTP(w, r) }

func (s *swappable) set(h http.Handler) { s.h.Store(&h) }

func relayUpstream(t *testing.T, opts *mcp.StreamableHTTPOptions) (*upstream, *swappable) {
	t.Helper()
	srv := relayServer()
	sw := &swappable{}
	sw.set(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, opts))
	ts := httptest.NewServer(sw)
	u := newUpstream(Server{Name: "relay", URL: ts.URL, Trust: Trusted}, 5*time.Second, slog.New(slog.DiscardHandler))
	t.Cleanup(func() {
		u.close()
		ts.CloseClientConnections()
		ts.Close()
	})
	s, err := u.session(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !u.relays(s) {
		t.Fatalf("calls to %s (protocol %s) do not go through the relay", ts.URL, s.InitializeResult().ProtocolVersion)
	}
	return u, sw
}

func callText(t *testing.T, u *upstream, tool string) string {
	t.Helper()
	return callAs(t, u, "ai-agent://dev/t/a", tool)
}

func callAs(t *testing.T, u *upstream, agent, tool string) string {
	t.Helper()
	raw, err := u.callTool(context.Background(), agent, tool, nil, nil)
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	var res mcp.CallToolResult
	if err := json.Unmarshal(raw, &res); err != nil || len(res.Content) != 1 {
		t.Fatalf("%s: result %s: %v", tool, raw, err)
	}
	return res.Content[0].(*mcp.TextContent).Text
}

func TestRelay(t *testing.T) {
	for _, c := range []struct {
		name string
		opts *mcp.StreamableHTTPOptions
	}{
		{"event streams", nil},
		{"plain JSON", &mcp.StreamableHTTPOptions{JSONResponse: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			u, _ := relayUpstream(t, c.opts)
			// A request of the upstream's during the call is answered: on
			// the call's stream by the relay (a ping succeeds, anything
			// else is not offered); without one, on the session's own
			// stream by the SDK.
			got := callText(t, u, "ping")
			if (c.opts == nil && got != "pong") || !strings.HasPrefix(got, "pong") {
				t.Fatalf("ping: %q", got)
			}
			// The upstream's own JSON-RPC error is its answer, passed on.
			_, err := u.callTool(context.Background(), "ai-agent://dev/t/a", "fail", nil, nil)
			var rpc *jsonrpc.Error
			if !errorsAs(err, &rpc) || rpc.Code != -32099 {
				t.Fatalf("fail: %v", err)
			}
		})
	}
}

// A stream the upstream closes before its answer is resumed after the
// last event it sent.
func TestRelayResumes(t *testing.T) {
	u, _ := relayUpstream(t, &mcp.StreamableHTTPOptions{EventStore: mcp.NewMemoryEventStore(nil)})
	if got := callText(t, u, "pause"); got != "resumed" {
		t.Fatalf("pause: %q", got)
	}
}

// An upstream that no longer knows the session (restarted: 404) gets a new
// one, and the call, which it did not run, is sent again.
func TestRelayNewSession(t *testing.T) {
	u, sw := relayUpstream(t, nil)
	first := callText(t, u, "whoami")
	srv := relayServer()
	sw.set(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
	if got := callText(t, u, "ping"); got != "pong" {
		t.Fatalf("ping: %q", got)
	}
	if now := callText(t, u, "whoami"); now == first {
		t.Fatal("the session was not replaced")
	}
}

func errorsAs(err error, target **jsonrpc.Error) bool { return errors.As(err, target) }

// A status the upstream answers one call with is that call's failure; the
// session stays.
func TestRelayStatusKeepsTheSession(t *testing.T) {
	u, sw := relayUpstream(t, nil)
	first := callText(t, u, "whoami")
	inner := *sw.h.Load()
	sw.set(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	}))
	if _, err := u.callTool(context.Background(), "ai-agent://dev/t/a", "ping", nil, nil); !errors.Is(err, errUnavailable) {
		t.Fatalf("a 503: %v", err)
	}
	sw.set(inner)
	if got := callText(t, u, "ping"); got != "pong" {
		t.Fatalf("ping: %q", got)
	}
	if now := callText(t, u, "whoami"); now != first {
		t.Fatalf("the session was replaced after a 503: %q, then %q", first, now)
	}
}

// reportTool reports its progress twice, when asked to, before it answers.
func reportTool(ctx context.Context, r *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
	if token := r.Params.GetProgressToken(); token != nil {
		for i := 1; i <= 2; i++ {
			r.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Progress: float64(i), Total: 2, Message: fmt.Sprintf("step %d", i)})
		}
	}
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "reported"}}}, nil, nil
}

// A call's progress reaches the caller of callTool, through the relay and
// through the SDK (an upstream on the sessionless protocol).
func TestRelayProgress(t *testing.T) {
	srv := relayServer()
	stateless := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{Stateless: true}))
	defer stateless.Close()
	viaSDK := newUpstream(Server{Name: "sdk", URL: stateless.URL, Trust: Trusted}, 5*time.Second, slog.New(slog.DiscardHandler))
	defer viaSDK.close()
	relayed, _ := relayUpstream(t, nil)
	for name, u := range map[string]*upstream{"relay": relayed, "sdk": viaSDK} {
		var mu sync.Mutex
		var got []string
		raw, err := u.callTool(context.Background(), "ai-agent://dev/t/a", "report", nil, func(p *mcp.ProgressNotificationParams) {
			mu.Lock()
			got = append(got, fmt.Sprintf("%v/%v %s", p.Progress, p.Total, p.Message))
			mu.Unlock()
		})
		if err != nil || !strings.Contains(string(raw), "reported") {
			t.Fatalf("%s: %s %v", name, raw, err)
		}
		// The SDK may pass progress on after the result.
		for deadline := time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
			mu.Lock()
			n := len(got)
			mu.Unlock()
			if n >= 2 || time.Now().After(deadline) {
				break
			}
		}
		mu.Lock()
		slices.Sort(got)
		if strings.Join(got, ", ") != "1/2 step 1, 2/2 step 2" {
			t.Errorf("%s: progress %q", name, got)
		}
		mu.Unlock()
		if s, _ := u.session(context.Background()); u.relays(s) != (name == "relay") {
			t.Errorf("%s: the call went the other way", name)
		}
	}
}

// An upstream's answer is bounded, also when it is an event stream whose
// event never ends: an untrusted upstream cannot make the gateway hold
// more than maxResultBytes of it.
func TestRelayBoundsAnEndlessEvent(t *testing.T) {
	u, sw := relayUpstream(t, nil)
	callText(t, u, "ping") // the agent's session is open
	line := "data: " + strings.Repeat("x", 1<<20) + "\n"
	sw.set(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for i := 0; i < 2*maxResultBytes>>20; i++ {
			if _, err := io.WriteString(w, line); err != nil {
				return
			}
		}
	}))
	_, err := u.callTool(context.Background(), "ai-agent://dev/t/a", "ping", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("an endless event: %v", err)
	}
}

// Each agent's calls go on a session of its own, opened once however many
// calls ask for it at once, closed when unused longest at the bound or
// idle too long.
func TestUpstreamSessionPerAgent(t *testing.T) {
	u, _ := relayUpstream(t, nil)
	a, b := callAs(t, u, "ai-agent://dev/t/a", "whoami"), callAs(t, u, "ai-agent://dev/t/b", "whoami")
	if a == b || a == "" || a == u.sess.ID() {
		t.Fatalf("sessions: agent a %q, agent b %q, the gateway's %q", a, b, u.sess.ID())
	}
	if again := callAs(t, u, "ai-agent://dev/t/a", "whoami"); again != a {
		t.Fatalf("agent a's next call went on session %q, not %q", again, a)
	}

	ids := make(chan string, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() { ids <- callAs(t, u, "ai-agent://dev/t/c", "whoami") })
	}
	wg.Wait()
	close(ids)
	c := <-ids
	for id := range ids {
		if id != c {
			t.Fatalf("concurrent first calls of one agent went on sessions %q and %q", c, id)
		}
	}

	// At the bound, the session unused longest (a's) is closed for d's.
	u.mu.Lock()
	u.maxAgents = 3
	u.mu.Unlock()
	callAs(t, u, "ai-agent://dev/t/b", "whoami")
	callAs(t, u, "ai-agent://dev/t/c", "whoami")
	callAs(t, u, "ai-agent://dev/t/d", "whoami")
	u.mu.Lock()
	_, kept := u.agents["ai-agent://dev/t/a"]
	n := len(u.agents)
	u.mu.Unlock()
	if kept || n != 3 {
		t.Fatalf("after eviction: a kept %v, %d sessions", kept, n)
	}
	if again := callAs(t, u, "ai-agent://dev/t/a", "whoami"); again == a {
		t.Fatal("an evicted session was used again")
	}

	// Sessions idle for agentIdle are closed at the next sweep; one in use
	// is not.
	u.mu.Lock()
	for _, as := range u.agents {
		as.used = time.Now().Add(-2 * agentIdle)
	}
	u.mu.Unlock()
	s, release, err := u.sessionFor(context.Background(), "ai-agent://dev/t/e")
	if err != nil {
		t.Fatal(err)
	}
	u.mu.Lock()
	u.agents["ai-agent://dev/t/e"].used = time.Now().Add(-2 * agentIdle)
	u.sweepLocked(time.Now())
	u.mu.Unlock()
	release()
	if _, err := s.ListTools(context.Background(), nil); err != nil {
		t.Fatalf("a session in use was closed by the sweep: %v", err)
	}
	u.mu.Lock()
	var left []string
	for agent := range u.agents {
		left = append(left, agent)
	}
	u.mu.Unlock()
	if len(left) != 1 || left[0] != "ai-agent://dev/t/e" {
		t.Fatalf("after the sweep: %v", left)
	}
}

// An upstream that floods a call with requests of its own gets a few
// answered at a time, not a goroutine and a connection each.
func TestRelayBoundsTheUpstreamsRequests(t *testing.T) {
	u, sw := relayUpstream(t, nil)
	callText(t, u, "ping") // the agent's session is open
	const flood = 200
	var inflight, most, answered atomic.Int64
	sw.set(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&m) != nil {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		if m.Method == "" { // an answer to one of its requests
			n := inflight.Add(1)
			for old := most.Load(); n > old && !most.CompareAndSwap(old, n); old = most.Load() {
			}
			answered.Add(1)
			time.Sleep(20 * time.Millisecond)
			inflight.Add(-1)
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range flood {
			fmt.Fprintf(w, "data: {\"jsonrpc\":\"2.0\",\"id\":\"flood-%d\",\"method\":\"ping\"}\n\n", i)
		}
		fmt.Fprintf(w, "data: {\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"done\"}]}}\n\n", m.ID)
	}))
	if got := callText(t, u, "anything"); got != "done" {
		t.Fatalf("the call: %q", got)
	}
	time.Sleep(100 * time.Millisecond) // let the answers started arrive
	if most.Load() > maxAnswering || answered.Load() >= flood {
		t.Fatalf("%d of %d requests answered, %d at once", answered.Load(), flood, most.Load())
	}
}
