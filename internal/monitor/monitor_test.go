package monitor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/audittest"
	"github.com/warden-run/warden/internal/audit/filelog"
	"github.com/warden-run/warden/internal/monitor"
	"github.com/warden-run/warden/internal/store/sqlite"
)

const agent = "ai-agent://prod/support/triage"

type env struct {
	log   *audit.Log
	store *sqlite.Store
	clock atomic.Int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	be, err := filelog.Open(filelog.Config{Dir: filepath.Join(dir, "audit")})
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(dir, "warden.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{log: audittest.OpenLog(t, be, audittest.Signer(t)), store: st}
	e.clock.Store(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC).UnixNano())
	return e
}

func (e *env) now() time.Time { return time.Unix(0, e.clock.Load()).UTC() }

func (e *env) monitor(t *testing.T, snapshots bool) *monitor.Monitor {
	t.Helper()
	opts := monitor.Options{Now: e.now, Poll: 10 * time.Millisecond}
	if snapshots {
		opts.Snapshots = e.store
	}
	m, err := monitor.New(opts, e.log)
	if err != nil {
		t.Fatal(err)
	}
	e.log.Watch(m.Wake())
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// deny appends a decision that denied the agent, as the pipeline records it.
func (e *env) deny(t *testing.T, reason string) int64 {
	t.Helper()
	e.clock.Add(int64(time.Second))
	in, _ := json.Marshal(map[string]any{"agent": map[string]any{"roles": []string{"support"}},
		"context": map[string]any{"source": map[string]any{"ip": "10.1.2.3"}}})
	idx, err := e.log.Append(context.Background(), &audit.Entry{Kind: audit.KindDecision, Time: e.now(), Agent: agent,
		Action: "tools/call", Resource: json.RawMessage(`{"id":"payments/transfer","kind":"mcp.tool"}`),
		Outcome: "deny", Reasons: []string{reason}, Input: in, DecisionID: fmt.Sprintf("dec_%d", e.clock.Load())})
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMonitorScoresWhatTheLogRecords(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.monitor(t, true)
	var last int64
	for i := 0; i < 10; i++ {
		last = e.deny(t, "warden.not_allowed")
	}
	waitFor(t, "the monitor to read the denials", func() bool { return m.Stats().Position >= last })
	r := m.Risk(agent)
	if r.Stale || !slices.Contains(r.Signals, monitor.SignalDenyBurst) || !slices.Contains(r.Signals, monitor.SignalNotPermitted) {
		t.Fatalf("risk %+v: want deny_burst and not_permitted, not stale", r)
	}
	if r.Level != monitor.LevelCritical {
		t.Fatalf("level %s after ten denied calls to a tool no role allows, want critical", r.Level)
	}
	rep, ok := m.Report(agent)
	if !ok || !slices.Contains(rep.Firings[monitor.SignalDenyBurst].Evidence, last) {
		t.Fatalf("report %+v: want the tenth denial (%d) as deny_burst's evidence", rep, last)
	}
	if r := m.Risk("ai-agent://prod/support/other"); r.Score != 0 || !r.Learning {
		t.Fatalf("an agent never seen: %+v", r)
	}
}

// A restart does not forget: the model comes back from its snapshot, and a
// model rebuilt from the whole log is the same.
func TestMonitorRemembersAcrossRestarts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.monitor(t, true)
	var last int64
	for i := 0; i < 12; i++ {
		last = e.deny(t, "ticket_closed")
	}
	waitFor(t, "the monitor to read the denials", func() bool { return m.Stats().Position >= last })
	before := m.Risk(agent)
	m.Close() // saves

	again := e.monitor(t, true)
	if got := again.Stats().Position; got != last {
		t.Fatalf("restored at %d, want %d", got, last)
	}
	if got := again.Risk(agent); got.Score != before.Score || !slices.Equal(got.Signals, before.Signals) {
		t.Fatalf("after restart %+v, before %+v", got, before)
	}
	rebuilt := e.monitor(t, false)
	waitFor(t, "the rebuild", func() bool { return rebuilt.Stats().Position >= last })
	if got := rebuilt.Risk(agent); got.Score != before.Score || !slices.Equal(got.Signals, before.Signals) {
		t.Fatalf("rebuilt %+v, live %+v", got, before)
	}
}

// A monitor that stopped says so: decisions keep their risk, marked stale.
func TestStoppedMonitorIsStale(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.monitor(t, false)
	idx := e.deny(t, "ticket_closed")
	waitFor(t, "the monitor to read", func() bool { return m.Stats().Position >= idx })
	if m.Risk(agent).Stale {
		t.Fatal("stale while caught up")
	}
	m.Close()
	e.clock.Add(int64(6 * time.Second))
	if !m.Risk(agent).Stale {
		t.Fatal("a stopped monitor's risk is not stale")
	}
}

// The model is a function of the events: the same stream, applied at once
// or in parts with the model saved and restored between them, ends in the
// same state, byte for byte.
func TestScoringIsDeterministic(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 5; seed++ {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			t.Parallel()
			evs := monitor.RandomEvents(seed, 20000)
			whole := newModel(t)
			for _, ev := range evs {
				whole.Apply(ev)
			}
			parts := newModel(t)
			for i, ev := range evs {
				parts.Apply(ev)
				if i%777 == 0 {
					b, err := parts.MarshalJSON()
					if err != nil {
						t.Fatal(err)
					}
					parts = newModel(t)
					if err := parts.Restore(b); err != nil {
						t.Fatal(err)
					}
				}
			}
			a, _ := whole.MarshalJSON()
			b, _ := parts.MarshalJSON()
			if !bytes.Equal(a, b) {
				t.Fatal("the model in parts differs from the model at once")
			}
			at := evs[len(evs)-1].Time.Add(time.Minute)
			for _, ev := range evs[len(evs)-50:] {
				if x, y := whole.Risk(ev.Agent, at), parts.Risk(ev.Agent, at); x.Score != y.Score || !slices.Equal(x.Signals, y.Signals) {
					t.Fatalf("%s: %+v and %+v", ev.Agent, x, y)
				}
			}
		})
	}
}

func newModel(t *testing.T) *monitor.Model {
	t.Helper()
	m, err := monitor.NewModel(monitor.Config{LearnFor: time.Hour, LearnEvents: 50})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// An agent that has learnt is told so though no signal ever fired for it.
func TestLearningEndsWithoutSignals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m, err := monitor.New(monitor.Options{Now: e.now, Poll: 10 * time.Millisecond,
		Model: monitor.Config{LearnEvents: 3, LearnFor: time.Nanosecond}}, e.log)
	if err != nil {
		t.Fatal(err)
	}
	e.log.Watch(m.Wake())
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	var last int64
	for i := 0; i < 4; i++ {
		e.clock.Add(int64(time.Second))
		idx, err := e.log.Append(context.Background(), &audit.Entry{Kind: audit.KindDecision, Time: e.now(), Agent: agent,
			Action: "tools/call", Resource: json.RawMessage(`{"id":"kb/search","kind":"mcp.tool"}`), Outcome: "allow", DecisionID: fmt.Sprint("dec_", i)})
		if err != nil {
			t.Fatal(err)
		}
		last = idx
	}
	waitFor(t, "the monitor to read", func() bool { return m.Stats().Position >= last })
	if r := m.Risk(agent); r.Learning || r.Score != 0 {
		t.Fatalf("after its decisions to learn from: %+v", r)
	}
}

// An entry whose recorded input has another shape than the model reads
// (a redact path that replaced the roles) is still read, without its
// input, not skipped.
func TestMonitorReadsAnEntryOfAnotherShape(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.monitor(t, false)
	var last int64
	for i := range 10 {
		e.clock.Add(int64(time.Second))
		idx, err := e.log.Append(context.Background(), &audit.Entry{Kind: audit.KindDecision, Time: e.now(), Agent: agent,
			Action: "tools/call", Resource: json.RawMessage(`{"id":"payments/transfer","kind":"mcp.tool"}`), Outcome: "deny",
			Reasons: []string{"warden.not_allowed"}, Input: json.RawMessage(`{"agent":{"roles":"[redacted]"}}`), DecisionID: fmt.Sprint("dec_", i)})
		if err != nil {
			t.Fatal(err)
		}
		last = idx
	}
	waitFor(t, "the monitor to read the denials", func() bool { return m.Stats().Position >= last })
	if s := m.Stats(); s.Skipped != 0 {
		t.Fatalf("%d entries skipped", s.Skipped)
	}
	if r := m.Risk(agent); !slices.Contains(r.Signals, monitor.SignalDenyBurst) {
		t.Fatalf("risk %+v: the denials were not read", r)
	}
}

// Each save swaps the stored snapshot when it is still the one the monitor
// saved last; one another process saved meanwhile is taken as the base of
// the next save. The swap is made against the stored bytes read back: the
// monitor keeps only their digest, not a second copy of its model.
func TestSavesSwapOnlyTheSnapshotSavedLast(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	m, err := monitor.New(monitor.Options{Now: e.now, Poll: 10 * time.Millisecond, Snapshots: e.store, SnapshotEvery: 10 * time.Millisecond}, e.log)
	if err != nil {
		t.Fatal(err)
	}
	e.log.Watch(m.Wake())
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	// storedAt is the position of the stored snapshot. The monitor saves
	// by its clock: each look moves it on.
	storedAt := func() int64 {
		e.clock.Add(int64(20 * time.Millisecond))
		b, err := e.store.Meta(ctx, "monitor.snapshot")
		if err != nil {
			return -2
		}
		md, _ := monitor.NewModel(monitor.Config{})
		if md.Restore(b) != nil {
			return -3
		}
		return md.Position
	}
	first := e.deny(t, "ticket_closed")
	waitFor(t, "the first save", func() bool { return storedAt() == first })
	second := e.deny(t, "ticket_closed")
	waitFor(t, "a save over the monitor's own snapshot", func() bool { return storedAt() == second })
	// Another process saves a snapshot of its own (here: the one before).
	cur, err := e.store.Meta(ctx, "monitor.snapshot")
	if err != nil {
		t.Fatal(err)
	}
	other := []byte(strings.Replace(string(cur), fmt.Sprintf(`"position":%d`, second), fmt.Sprintf(`"position":%d`, first), 1))
	if ok, err := e.store.SwapMeta(ctx, "monitor.snapshot", cur, other); err != nil || !ok || storedAt() != first {
		t.Fatalf("another process's save: %v %v (stored at %d)", ok, err, storedAt())
	}
	// Taken as the base, it is swapped at the next change of the model.
	third := e.deny(t, "ticket_closed")
	waitFor(t, "a save over the other process's snapshot", func() bool { return storedAt() == third })
}
