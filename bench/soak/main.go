// Command soak drives a long, steady load through Warden's MCP gateway, with
// the churn of a real deployment: agents registered and disabled as it runs,
// MCP sessions opened and closed (with and without sessions, by protocol
// version), tokens that expire and are renewed. Every call must succeed; it
// prints one line of figures per interval (calls, errors, latency) and a
// summary, as JSON.
//
// It is the load of bench/soak.sh, which watches the server's memory and
// file descriptors meanwhile.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/time/rate"

	"github.com/warden-run/warden/sdk"
)

// interval is one line of the report.
type interval struct {
	At        string  `json:"at"`
	Calls     int     `json:"calls"`
	Errors    int     `json:"errors"`
	PerSecond float64 `json:"per_second"`
	P50Micros float64 `json:"p50_us"`
	P99Micros float64 `json:"p99_us"`
	Sessions  int64   `json:"sessions_opened"`
	Agents    int64   `json:"agents_registered"`
}

// agent is one identity of the pool.
type agent struct {
	id     string
	client *sdk.Client
	http   *http.Client
	users  sync.WaitGroup
}

type soak struct {
	warden, gateway, admin string
	life                   time.Duration
	limiter                *rate.Limiter

	mu     sync.Mutex
	pool   []*agent
	lat    []time.Duration
	errs   int
	first  []string
	opened atomic.Int64
	made   atomic.Int64
}

func main() {
	var (
		wardenURL, gatewayURL, tokenFile string
		perSecond                        float64
		workers, agents                  int
		dur, every, churn, life          time.Duration
	)
	flag.StringVar(&wardenURL, "warden", "", "the Warden server")
	flag.StringVar(&gatewayURL, "gateway", "", "the gateway's MCP endpoint")
	flag.StringVar(&tokenFile, "admin-token-file", "", "the admin token, to register and disable agents")
	flag.Float64Var(&perSecond, "rate", 200, "tool calls per second, all workers together")
	flag.IntVar(&workers, "workers", 16, "concurrent MCP sessions")
	flag.IntVar(&agents, "agents", 8, "agents in the pool at any time")
	flag.DurationVar(&dur, "d", time.Hour, "how long")
	flag.DurationVar(&every, "every", 10*time.Second, "report interval")
	flag.DurationVar(&churn, "churn", 20*time.Second, "one agent is replaced by a new one this often")
	flag.DurationVar(&life, "token-life", time.Minute, "access token lifetime: tokens expire and are renewed")
	flag.Parse()
	tok, err := os.ReadFile(tokenFile)
	fail(err)
	s := &soak{warden: strings.TrimSuffix(wardenURL, "/"), gateway: gatewayURL, admin: strings.TrimSpace(string(tok)), life: life,
		limiter: rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond/10)))}
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	for range agents {
		a, err := s.register(ctx)
		fail(err)
		s.pool = append(s.pool, a)
	}
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() { s.work(ctx, i) })
	}
	wg.Go(func() { s.churn(ctx, churn) })
	start := time.Now()
	t := time.NewTicker(every)
	defer t.Stop()
	total, totalErrs := 0, 0
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-t.C:
		}
		s.mu.Lock()
		lat, errs, first := s.lat, s.errs, s.first
		s.lat, s.errs, s.first = nil, 0, nil
		s.mu.Unlock()
		for _, e := range first {
			fmt.Fprintln(os.Stderr, "soak: error:", e)
		}
		total += len(lat)
		totalErrs += errs
		slices.Sort(lat)
		json.NewEncoder(os.Stdout).Encode(interval{At: time.Since(start).Round(time.Second).String(), Calls: len(lat), Errors: errs,
			PerSecond: float64(len(lat)) / every.Seconds(), P50Micros: pct(lat, 0.5), P99Micros: pct(lat, 0.99),
			Sessions: s.opened.Load(), Agents: s.made.Load()})
	}
	wg.Wait()
	fmt.Fprintf(os.Stderr, "soak: %d calls, %d errors, %d sessions, %d agents in %s\n", total, totalErrs, s.opened.Load(), s.made.Load(),
		time.Since(start).Round(time.Second))
	if totalErrs > 0 {
		os.Exit(1)
	}
}

func pct(lat []time.Duration, p float64) float64 {
	if len(lat) == 0 {
		return 0
	}
	return float64(lat[int(float64(len(lat)-1)*p)].Microseconds())
}

// work opens a session as an agent of the pool, makes a few calls in it at
// the shared rate, closes it, and again, until ctx ends.
func (s *soak) work(ctx context.Context, worker int) {
	for ctx.Err() == nil {
		a := s.pick()
		if err := s.session(ctx, a, worker); err != nil && ctx.Err() == nil {
			s.fault(err)
			time.Sleep(100 * time.Millisecond)
		}
		a.users.Done()
	}
}

func (s *soak) pick() *agent {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.pool[rand.IntN(len(s.pool))]
	a.users.Add(1)
	return a
}

func (s *soak) session(ctx context.Context, a *agent, worker int) error {
	version := "2025-11-25"
	if worker%4 == 3 {
		version = "2026-07-28" // sessionless
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "soak", Version: "1"}, &mcp.ClientOptions{Capabilities: &mcp.ClientCapabilities{}})
	sess, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: s.gateway, HTTPClient: a.http, DisableStandaloneSSE: true, MaxRetries: -1},
		&mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		return fmt.Errorf("connect as %s: %w", a.id, err)
	}
	defer sess.Close()
	s.opened.Add(1)
	for range 20 + rand.IntN(200) {
		if s.limiter.Wait(ctx) != nil {
			return nil
		}
		t0 := time.Now()
		r, err := sess.CallTool(ctx, &mcp.CallToolParams{Name: "bench__echo", Arguments: map[string]string{"text": "soak"}})
		d := time.Since(t0)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil || r.IsError {
			return fmt.Errorf("call as %s: %v %v", a.id, err, r)
		}
		s.mu.Lock()
		s.lat = append(s.lat, d)
		s.mu.Unlock()
	}
	return nil
}

func (s *soak) fault(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs++
	if len(s.first) < 3 {
		s.first = append(s.first, err.Error())
	}
}

// churn replaces the pool's oldest agent by a new one every so often; the
// old one is disabled once its last session is over.
func (s *soak) churn(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a, err := s.register(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.fault(err)
			}
			continue
		}
		s.mu.Lock()
		old := s.pool[0]
		s.pool = append(s.pool[1:], a)
		s.mu.Unlock()
		go func() {
			old.users.Wait()
			if err := s.adminCall(context.Background(), "POST", "/v1/agents/"+url.PathEscape(old.id)+"/disable", map[string]string{"reason": "soak churn"}); err != nil {
				s.fault(err)
			}
		}()
	}
}

// register makes a new agent with a key of its own.
func (s *soak) register(ctx context.Context) (*agent, error) {
	n := s.made.Add(1)
	id := fmt.Sprintf("ai-agent://prod/soak/agent-%d-%d", time.Now().Unix(), n)
	k := sdk.GenerateKey()
	if err := s.adminCall(ctx, "POST", "/v1/agents", map[string]any{"id": id, "roles": []string{"bench"}, "owner": "team-soak",
		"public_key": json.RawMessage(k.PublicJWK())}); err != nil {
		return nil, err
	}
	c, err := sdk.NewClient(s.warden, id, k, sdk.WithResource(s.gateway), sdk.WithDPoP(), sdk.WithLifetime(s.life))
	if err != nil {
		return nil, err
	}
	return &agent{id: id, client: c, http: &http.Client{Transport: c.Transport(&http.Transport{MaxIdleConnsPerHost: 4})}}, nil
}

func (s *soak) adminCall(ctx context.Context, method, path string, body any) error {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, method, s.warden+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, msg)
	}
	return nil
}

func fail(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}
