package monitor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/audittest"
	"github.com/warden-run/warden/internal/audit/filelog"
	"github.com/warden-run/warden/internal/monitor"
)

// BenchmarkApply is the model's own cost per event: usual calls of 100
// agents over ten tools.
func BenchmarkApply(b *testing.B) {
	m, err := monitor.NewModel(monitor.Config{LearnFor: time.Hour, LearnEvents: 50})
	if err != nil {
		b.Fatal(err)
	}
	t := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		m.Apply(monitor.Event{Index: int64(i), Time: t.Add(time.Duration(i) * 10 * time.Millisecond), Kind: monitor.EventDecision,
			Agent: fmt.Sprintf("ai-agent://prod/team/agent-%d", i%100), Action: "tools/call", Resource: fmt.Sprintf("mcp.tool:t/%d", i%10),
			Outcome: "allow", SourceIP: "10.1.2.3", Roles: []string{"worker"}, ArgKeys: []string{"id"}})
	}
}

// BenchmarkFollow is the monitor reading decisions from a real audit log
// (decoding each entry and its recorded input, then the model): the rate it
// keeps up with.
func BenchmarkFollow(b *testing.B) {
	be, err := filelog.Open(filelog.Config{Dir: filepath.Join(b.TempDir(), "audit")})
	if err != nil {
		b.Fatal(err)
	}
	l, err := audit.Open(audit.Config{Mode: audit.ModeAsync}, be, audittest.Signer(b))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	input, _ := json.Marshal(map[string]any{"agent": map[string]any{"id": "ai-agent://prod/team/agent", "roles": []string{"worker"}, "status": "active"},
		"action": "tools/call", "resource": map[string]any{"kind": "mcp.tool", "id": "t/1", "attributes": map[string]any{"read_only": true}},
		"args": map[string]any{"id": "A-1", "query": "quarterly report"}, "context": map[string]any{"time": "2026-12-01T09:00:00Z",
			"source": map[string]any{"ip": "10.1.2.3", "region": "eu-west"}, "risk": map[string]any{"score": 0, "level": "low", "signals": []any{}},
			"session": map[string]any{"id": "s-1", "taints": []any{}}, "delegation": []any{}}})
	ctx := context.Background()
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	for i := range b.N {
		if _, err := l.Append(ctx, &audit.Entry{Kind: audit.KindDecision, Time: t0.Add(time.Duration(i) * time.Millisecond),
			Agent: fmt.Sprintf("ai-agent://prod/team/agent-%d", i%100), Action: "tools/call", DecisionID: fmt.Sprintf("dec_%d", i),
			Resource: json.RawMessage(fmt.Sprintf(`{"id":"t/%d","kind":"mcp.tool"}`, i%10)), Outcome: "allow", Input: input}); err != nil {
			b.Fatal(err)
		}
	}
	for {
		if n, _ := l.Size(ctx); n == int64(b.N) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	m, err := monitor.New(monitor.Options{}, l)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	if err := m.Start(ctx); err != nil {
		b.Fatal(err)
	}
	for m.Stats().Position < int64(b.N)-1 {
		time.Sleep(100 * time.Microsecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "entries/s")
	b.StopTimer()
	m.Close()
}

// BenchmarkAgentState is the memory one agent costs the model: after a day
// of usual work (ten tools), and at its bounds (every set full).
func BenchmarkAgentState(b *testing.B) {
	for _, tc := range []struct {
		name  string
		tools int
		keys  int
	}{{"usual", 10, 3}, {"bounds", 5000, 5000}} {
		b.Run(tc.name, func(b *testing.B) {
			const agents = 200
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			m, _ := monitor.NewModel(monitor.Config{LearnFor: time.Hour, LearnEvents: 50})
			t := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
			idx := int64(0)
			for a := range agents {
				for i := range 6000 {
					idx++
					m.Apply(monitor.Event{Index: idx, Time: t.Add(time.Duration(i) * 14 * time.Second), Kind: monitor.EventDecision,
						Agent: fmt.Sprintf("ai-agent://prod/team/agent-%d", a), Action: "tools/call",
						Resource: fmt.Sprintf("mcp.tool:t/%d", (i*7)%tc.tools), Outcome: "allow",
						SourceIP: fmt.Sprintf("10.%d.%d.1", (i/256)%256, i%256%(1+tc.keys/100)), Roles: []string{"worker"},
						ArgKeys: []string{fmt.Sprintf("k%d", i%tc.keys)}})
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/agents/1024, "KiB/agent")
			snap, _ := m.MarshalJSON()
			b.ReportMetric(float64(len(snap))/agents/1024, "snapshot-KiB/agent")
			runtime.KeepAlive(m)
			for range b.N {
			}
		})
	}
}
