package decide_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/wire"
	"github.com/warden-run/warden/sdk"
)

// marketOpen is a Tuesday afternoon: the finance bundle lets traders read
// market data then, so the benchmarks measure the allow path, which
// evaluates every rule.
var marketOpen = time.Date(2026, 3, 10, 15, 10, 0, 0, time.UTC)

const financeTrader = "ai-agent://prod/finance/trading-optimizer"

// financeSetup starts a control plane on the shipped finance bundle and
// returns a pipeline whose clock is at marketOpen, and a trader's token.
// DPoP is off for prod here: a proof must be new for every request, and
// making one is the agent's cost, not the decision point's.
func financeSetup(b *testing.B, mode string) (*decide.Pipeline, decide.Request) {
	return financeSetupMonitored(b, mode, false)
}

// financeSetupMonitored is financeSetup, with the behavioural monitor
// following the audit log and the pipeline reading its risk when
// monitored is true, and with no monitor at all when it is false.
func financeSetupMonitored(b *testing.B, mode string, monitored bool) (*decide.Pipeline, decide.Request) {
	w := apptest.Start(b, func(c *config.Config) {
		c.Monitor.Disabled = !monitored
		c.Audit.Mode = mode
		c.Policy.Dir = "../../policies/finance"
		c.Identity.TrustDomains["prod"] = config.TrustDomain{}
	})
	k := w.Register(b, financeTrader, "trader")
	c, err := sdk.NewClient(w.URL, financeTrader, k)
	if err != nil {
		b.Fatal(err)
	}
	tok, err := c.Token(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	var risk decide.RiskSource
	if monitored {
		risk = w.App.Monitor
	}
	p, err := decide.New(decide.Config{Regions: (config.Decide{Regions: map[string][]string{"eu-west": {"10.1.0.0/16"}}}).RegionPrefixes(),
		RecordInput: true, Risk: risk, Now: func() time.Time { return marketOpen }}, w.App.Verifier, w.App.View, w.App.Policies, w.App.Audit)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	req := decide.Request{Token: tok.AccessToken, Action: "tools/call",
		Resource: decide.Resource{Kind: "mcp.tool", ID: "market-data/get_quote"},
		Args:     json.RawMessage(`{"symbol": "ACME"}`),
		Context:  decide.RequestContext{Source: decide.Source{IP: "10.1.2.3"}, Session: decide.Session{ID: "s-1"}}}
	d, err := p.Decide(context.Background(), decide.InProcess("bench", "warden"), &req)
	if err != nil || d.Outcome != policy.Allow {
		b.Fatalf("the benchmark request is not allowed: %+v %v", d, err)
	}
	return p, req
}

// reportPercentiles adds p50 and p99 of the measured durations.
func reportPercentiles(b *testing.B, ds []time.Duration) {
	slices.Sort(ds)
	if len(ds) == 0 {
		return
	}
	b.ReportMetric(float64(ds[len(ds)/2].Nanoseconds())/1000, "p50-µs")
	b.ReportMetric(float64(ds[len(ds)*99/100].Nanoseconds())/1000, "p99-µs")
}

// BenchmarkEvaluateFinance is the policy decision alone: the prepared
// finance bundle evaluated on a full input, and judged. "same" repeats one
// input; "distinct" changes args.symbol every time, so the rules that read
// args are evaluated every time; "every rule" keeps no rule values at all,
// as OPA evaluates.
func BenchmarkEvaluateFinance(b *testing.B) {
	for _, tc := range []struct {
		name     string
		distinct bool
		cfg      policy.EngineConfig
	}{
		{"same", false, policy.EngineConfig{}},
		{"distinct", true, policy.EngineConfig{}},
		{"every_rule", true, policy.EngineConfig{NoRuleCache: true}},
	} {
		b.Run(tc.name, func(b *testing.B) { benchmarkEvaluate(b, tc.distinct, tc.cfg) })
	}
}

func benchmarkEvaluate(b *testing.B, distinct bool, cfg policy.EngineConfig) {
	bundle, err := policy.LoadDir("../../policies/finance")
	if err != nil {
		b.Fatal(err)
	}
	e, err := policy.Compile(context.Background(), bundle, cfg)
	if err != nil {
		b.Fatal(err)
	}
	input := map[string]any{
		"agent": map[string]any{"id": financeTrader, "trust_domain": "prod", "path": []any{"finance", "trading-optimizer"},
			"roles": []any{"trader"}, "owner": "team-quant", "attributes": map[string]any{}, "status": "active"},
		"action":   "tools/call",
		"resource": map[string]any{"kind": "mcp.tool", "id": "market-data/get_quote", "attributes": e.Resources().Enrich("mcp.tool", "market-data/get_quote", nil)},
		"args":     map[string]any{"symbol": "ACME"},
		"context": map[string]any{"time": marketOpen.Format(time.RFC3339Nano), "source": map[string]any{"ip": "10.1.2.3", "region": "eu-west"},
			"risk": map[string]any{"score": 0, "level": "low", "signals": []any{}}, "session": map[string]any{"id": "s-1", "taints": []any{}},
			"grants": []any{}, "delegation": []any{}, "approvals": []any{}},
	}
	ctx := context.Background()
	res, err := e.Evaluate(ctx, input, marketOpen)
	if v := policy.Judge(res, err, nil); v.Outcome != policy.Allow {
		b.Fatalf("not allowed: %+v", v)
	}
	ds := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	args := input["args"].(map[string]any)
	for i := range b.N {
		if distinct {
			args["symbol"] = "SYM-" + strconv.Itoa(i)
		}
		t0 := time.Now()
		res, err := e.Evaluate(ctx, input, marketOpen)
		v := policy.Judge(res, err, nil)
		ds = append(ds, time.Since(t0))
		if v.Outcome != policy.Allow {
			b.Fatal(v)
		}
	}
	b.StopTimer()
	reportPercentiles(b, ds)
}

// BenchmarkDecideFinance is a whole in-process decision, one at a time:
// token verification, enrichment, evaluation and the audit entry (queued:
// audit mode async, so no disk sync is in the figure).
//
// "same" repeats one request (an identical input in the same second reuses
// the result); "distinct" changes args.symbol in every request.
func BenchmarkDecideFinance(b *testing.B) {
	p, req := financeSetup(b, "async")
	for _, distinct := range []bool{false, true} {
		name := "same"
		if distinct {
			name = "distinct"
		}
		b.Run(name, func(b *testing.B) { benchmarkDecide(b, p, req, distinct) })
	}
}

// BenchmarkDecideMonitored is BenchmarkDecideFinance/distinct without
// the behavioural monitor and with it (following the audit log in the
// background, its risk read by every decision): the difference is what
// monitoring costs a decision.
func BenchmarkDecideMonitored(b *testing.B) {
	for _, monitored := range []bool{false, true} {
		name := "off"
		if monitored {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			p, req := financeSetupMonitored(b, "async", monitored)
			benchmarkDecide(b, p, req, true)
		})
	}
}

// argsSeq numbers the distinct arguments across every run of every
// benchmark: the clock stands still at marketOpen, so arguments used in an
// earlier run would find the decision memo's result, not be evaluated.
var argsSeq atomic.Int64

func benchmarkDecide(b *testing.B, p *decide.Pipeline, req decide.Request, distinct bool) {
	ctx := context.Background()
	ds := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		r := req
		if distinct {
			r.Args = json.RawMessage(`{"symbol": "SYM-` + strconv.FormatInt(argsSeq.Add(1), 10) + `"}`)
		}
		t0 := time.Now()
		d, err := p.Decide(ctx, decide.InProcess("bench", "warden"), &r)
		ds = append(ds, time.Since(t0))
		if err != nil || d.Outcome != policy.Allow {
			b.Fatal(d, err)
		}
	}
	b.StopTimer()
	reportPercentiles(b, ds)
}

// BenchmarkDecideFinanceDurable is whole in-process decisions from 16
// goroutines with durable recording (audit mode sync): each answer waits
// until its entry is synced to disk, and concurrent ones share syncs.
func BenchmarkDecideFinanceDurable(b *testing.B) {
	p, req := financeSetup(b, "sync")
	ctx := context.Background()
	var mu sync.Mutex
	ds := make([]time.Duration, 0, b.N)
	b.SetParallelism(8) // x GOMAXPROCS(2) = 16 goroutines
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			r := req
			t0 := time.Now()
			d, err := p.Decide(ctx, decide.InProcess("bench", "warden"), &r)
			mine = append(mine, time.Since(t0))
			if err != nil || d.Outcome != policy.Allow {
				b.Error(d, err)
				return
			}
		}
		mu.Lock()
		ds = append(ds, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	reportPercentiles(b, ds)
}

// BenchmarkDecideProvenance is BenchmarkDecideFinance/distinct with and
// without the provenance an enforcement point that follows reads sends
// (four arguments, each with its sources): what it costs the decision
// (the input and the entry's lineage), the gateway's own share apart.
func BenchmarkDecideProvenance(b *testing.B) {
	p, req := financeSetup(b, "async")
	b.Run("without", func(b *testing.B) { benchmarkDecide(b, p, req, true) })
	with := req
	origin := wire.ArgOrigin{Sources: []string{"trusted", "untrusted"}, OnlyUntrusted: false, Values: 2, Upstreams: []string{"mail", "contacts"},
		Tools: []string{"read_inbox", "lookup"}, Reads: []int64{41, 44}}
	with.Context.Provenance = &wire.Provenance{Args: map[string]wire.ArgOrigin{"symbol": origin, "quantity": origin, "price": origin, "account": origin},
		UntrustedReads: []int64{41}}
	b.Run("with", func(b *testing.B) { benchmarkDecide(b, p, with, true) })
}

// BenchmarkAuditBytesPerDecision is the audit log's growth on disk per
// decision of the finance bundle (a small tool call), with the policy
// input recorded (the default) and without: the figure for sizing the
// disk (docs/operations.md). Sync mode, so that every entry is on disk.
func BenchmarkAuditBytesPerDecision(b *testing.B) {
	for _, record := range []bool{true, false} {
		name := "input_recorded"
		if !record {
			name = "digest_only"
		}
		b.Run(name, func(b *testing.B) {
			w := apptest.Start(b, func(c *config.Config) {
				c.Monitor.Disabled = true
				c.Audit.Mode = "sync"
				c.Policy.Dir = "../../policies/finance"
				c.Identity.TrustDomains["prod"] = config.TrustDomain{}
			})
			k := w.Register(b, financeTrader, "trader")
			c, err := sdk.NewClient(w.URL, financeTrader, k)
			if err != nil {
				b.Fatal(err)
			}
			tok, err := c.Token(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			p, err := decide.New(decide.Config{RecordInput: record, Now: func() time.Time { return marketOpen }}, w.App.Verifier, w.App.View, w.App.Policies, w.App.Audit)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(p.Close)
			dir := filepath.Join(w.Config.Data, "audit")
			before := dirSize(b, dir)
			req := decide.Request{Token: tok.AccessToken, Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool", ID: "market-data/get_quote"},
				Context: decide.RequestContext{Source: decide.Source{IP: "10.1.2.3"}, Session: decide.Session{ID: "s-1"}}}
			b.ResetTimer()
			for range b.N {
				r := req
				r.Args = json.RawMessage(`{"symbol": "SYM-` + strconv.FormatInt(argsSeq.Add(1), 10) + `"}`)
				if _, err := p.Decide(context.Background(), decide.InProcess("bench", "warden"), &r); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			w.App.Audit.Close() // the tree and the last checkpoint written
			b.ReportMetric(float64(dirSize(b, dir)-before)/float64(b.N), "disk-B/decision")
		})
	}
}

// dirSize is the bytes the files under dir take on disk.
func dirSize(b *testing.B, dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			} else {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}
