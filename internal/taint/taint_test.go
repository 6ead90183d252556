package taint_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/warden-run/warden/internal/store"
	"github.com/warden-run/warden/internal/store/postgres"
	"github.com/warden-run/warden/internal/store/sqlite"
	"github.com/warden-run/warden/internal/taint"
)

// clock is a time tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type backend interface {
	store.TaintStore
	store.ChangeFeed
	store.EventStore
}

func openSQLite(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openRegistry(t *testing.T, cfg taint.Config, st backend) *taint.Registry {
	t.Helper()
	r, err := taint.Open(context.Background(), cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func read(agent, task string) store.Taint {
	return store.Taint{AgentID: agent, Task: task, Name: taint.Untrusted, DecisionID: "dec_" + agent + task,
		EnforcementPoint: "mcp-gateway", Action: "tools/call", ResourceKind: "mcp.tool", ResourceID: "web/fetch"}
}

func names(ts []store.Taint) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Task+"/"+t.Name)
	}
	return out
}

// A token bound to a task sees the agent's own taints and its task's; a
// token bound to none sees every one of the agent's: no token sheds what
// another one read.
func TestScopes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openSQLite(t, filepath.Join(t.TempDir(), "warden.db"))
	defer s.Close()
	r := openRegistry(t, taint.Config{}, s)
	const a = "ai-agent://prod/assistant"
	for _, tc := range []struct{ task string }{{"t1"}, {"t2"}} {
		if created, err := r.Record(ctx, read(a, tc.task)); err != nil || !created {
			t.Fatalf("record %s: %v %v", tc.task, created, err)
		}
	}
	for _, tc := range []struct {
		name, task string
		want       int
	}{
		{"no task sees every scope", "", 2},
		{"a task sees its own", "t1", 1},
		{"a fresh task sees none", "t3", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.Held(a, tc.task)
			if err != nil || len(got) != tc.want {
				t.Fatalf("Held(%q) = %v, %v; want %d", tc.task, names(got), err, tc.want)
			}
		})
	}
	if _, err := r.Record(ctx, read(a, "")); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Held(a, "t3"); len(got) != 1 || got[0].Task != "" {
		t.Fatalf("the agent's own taint reaches every task: %v", names(got))
	}
	if got, _ := r.Held("ai-agent://prod/other", ""); len(got) != 0 {
		t.Fatalf("another agent: %v", names(got))
	}
}

// A restart does not forget: taints are in the store before Record
// returns.
func TestRestartKeepsTaints(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "warden.db")
	s := openSQLite(t, path)
	r, err := taint.Open(ctx, taint.Config{}, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Record(ctx, read("ai-agent://prod/a", "")); err != nil {
		t.Fatal(err)
	}
	r.Close()
	s.Close()
	s = openSQLite(t, path)
	defer s.Close()
	r = openRegistry(t, taint.Config{}, s)
	if got, err := r.Held("ai-agent://prod/a", ""); err != nil || len(got) != 1 || got[0].DecisionID != "dec_ai-agent://prod/a" {
		t.Fatalf("after a restart: %+v, %v", got, err)
	}
}

// A taint ends a configured time after the last read that set or renewed
// it; its end is recorded as an event (which the relay puts in the audit
// log), and later reads renew it.
func TestExpiry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openSQLite(t, filepath.Join(t.TempDir(), "warden.db"))
	defer s.Close()
	c := &clock{t: time.Now()}
	r := openRegistry(t, taint.Config{ExpireAfter: 8 * time.Second, Now: c.now}, s)
	const a = "ai-agent://prod/reader"
	if _, err := r.Record(ctx, read(a, "")); err != nil {
		t.Fatal(err)
	}
	c.add(6 * time.Second)
	if _, err := r.Record(ctx, read(a, "")); err != nil { // renewed
		t.Fatal(err)
	}
	c.add(6 * time.Second)
	if got, _ := r.Held(a, ""); len(got) != 1 {
		t.Fatal("a renewed taint ended from its first read")
	}
	c.add(3 * time.Second)
	if got, _ := r.Held(a, ""); len(got) != 0 {
		t.Fatalf("a taint past its time still holds: %v", names(got))
	}
	// The sweeper records the end (it leaves the store a second's margin
	// for renewals not written yet).
	c.add(2 * time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs, err := s.Events(ctx, store.EventFilter{Target: a})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 1 && evs[0].Action == "taint.expire" && evs[0].Actor == "warden:taint-expiry" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no expiry event: %+v", evs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if left, _ := s.Taints(ctx, a); len(left) != 0 {
		t.Fatalf("the store still holds %v", names(left))
	}
}

// An operator's clear is recorded with who and why.
func TestClear(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openSQLite(t, filepath.Join(t.TempDir(), "warden.db"))
	defer s.Close()
	r := openRegistry(t, taint.Config{}, s)
	const a = "ai-agent://prod/reader"
	for _, task := range []string{"", "t1"} {
		if _, err := r.Record(ctx, read(a, task)); err != nil {
			t.Fatal(err)
		}
	}
	gone, err := r.Clear(ctx, "admin:alice", store.TaintSelection{AgentID: a, Task: "t1"}, "the task ended")
	if err != nil || len(gone) != 1 {
		t.Fatalf("clear: %v, %v", gone, err)
	}
	if got, _ := r.Held(a, ""); len(got) != 1 || got[0].Task != "" {
		t.Fatalf("after clearing t1: %v", names(got))
	}
	evs, err := s.Events(ctx, store.EventFilter{Target: a})
	if err != nil || len(evs) != 1 || evs[0].Actor != "admin:alice" || evs[0].Action != "taint.clear" {
		t.Fatalf("events: %+v, %v", evs, err)
	}
}

// Replicas share taints through PostgreSQL: one's read taints the agent
// at the other, and one's clear clears it at the other.
func TestReplicas(t *testing.T) {
	t.Parallel()
	dsn := os.Getenv("WARDEN_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("set WARDEN_TEST_POSTGRES to run the replica test against PostgreSQL")
	}
	ctx := context.Background()
	b := make([]byte, 6)
	rand.Read(b)
	schema := "t_" + hex.EncodeToString(b)
	open := func() *postgres.Store {
		s, err := postgres.Open(ctx, postgres.Config{DSN: dsn, Schema: schema})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	s1, s2 := open(), open()
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
			conn.Close(ctx)
		}
	})
	r1 := openRegistry(t, taint.Config{}, s1)
	r2 := openRegistry(t, taint.Config{}, s2)
	const a = "ai-agent://prod/roamer"
	if _, err := r1.Record(ctx, read(a, "")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { got, _ := r2.Held(a, ""); return len(got) == 1 })
	if _, err := r2.Clear(ctx, "admin:bob", store.TaintSelection{AgentID: a, AnyTask: true}, "reviewed"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { got, _ := r1.Held(a, ""); return len(got) == 0 })
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("not within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// failingOnce holds the first write of a taint until released, then fails
// it, as a store that went away in the middle of a write does.
type failingOnce struct {
	backend
	entered, release chan struct{}
	once             sync.Once
}

func (s *failingOnce) AddTaint(ctx context.Context, t store.Taint, renewBefore time.Time) (bool, error) {
	first := false
	s.once.Do(func() { first = true })
	if first {
		s.entered <- struct{}{}
		<-s.release
		return false, errors.New("store gone")
	}
	return s.backend.AddTaint(ctx, t, renewBefore)
}

// Two reads of an untrusted source at once (parallel tool calls) while
// the store fails the taint's write: neither goes ahead before the store
// has the taint, and the taint is neither lost on a reload nor left
// unwritten.
func TestConcurrentReadsWaitForTheTaintsWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openSQLite(t, filepath.Join(t.TempDir(), "warden.db"))
	defer s.Close()
	f := &failingOnce{backend: s, entered: make(chan struct{}), release: make(chan struct{})}
	r := openRegistry(t, taint.Config{}, f)
	const a = "ai-agent://dev/parallel"
	first := make(chan error, 1)
	go func() { _, err := r.Record(ctx, read(a, "")); first <- err }()
	<-f.entered
	second := make(chan error, 1)
	go func() { _, err := r.Record(ctx, read(a, "")); second <- err }()
	select {
	case err := <-second:
		t.Fatalf("the second read went ahead (%v) while the taint's write was on its way", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(f.release)
	if err := <-first; err == nil {
		t.Fatal("the first read went ahead although the taint was not written")
	}
	if err := <-second; err != nil {
		t.Fatalf("the second read, which wrote the taint again: %v", err)
	}
	if stored, _ := s.Taints(ctx, a); len(stored) != 1 {
		t.Fatalf("the store holds %d taints, want 1", len(stored))
	}
	// Any change of the agent's reloads it: the taint stays.
	if _, err := s.AddTaint(ctx, store.Taint{AgentID: a, Name: "other", DecisionID: "d2", CreatedAt: time.Now(), LastReadAt: time.Now()}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { h, _ := r.Held(a, ""); return len(h) == 2 })
}

// A failed write is tried again by the registry itself, and kept
// meanwhile.
func TestFailedTaintWriteIsRetried(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openSQLite(t, filepath.Join(t.TempDir(), "warden.db"))
	defer s.Close()
	f := &failingOnce{backend: s, entered: make(chan struct{}, 1), release: make(chan struct{})}
	close(f.release)
	r := openRegistry(t, taint.Config{}, f)
	const a = "ai-agent://dev/unlucky"
	if _, err := r.Record(ctx, read(a, "")); err == nil {
		t.Fatal("a read whose taint was not written went ahead")
	}
	if h, err := r.Held(a, ""); err != nil || len(h) != 1 {
		t.Fatalf("after a failed write: %v, %v", names(h), err)
	}
	waitFor(t, func() bool { stored, _ := s.Taints(ctx, a); return len(stored) == 1 })
}

// failingLoads fails loads of every agent's taints while fail is set, and
// lets the test drive the change feed.
type failingLoads struct {
	backend
	ch   chan store.Change
	fail atomic.Bool
}

func (f *failingLoads) Subscribe(context.Context) <-chan store.Change { return f.ch }

func (f *failingLoads) Taints(ctx context.Context, agent string) ([]store.Taint, error) {
	if agent == "" && f.fail.Load() {
		return nil, errors.New("store blip")
	}
	return f.backend.Taints(ctx, agent)
}

// A resync that fails leaves every decision denied until a reload works,
// and is tried again: an agent tainted on another replica meanwhile is
// learned. (It used to be forgotten: its decisions saw no taint.)
func TestFailedResyncIsRetriedAndFailsClosed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openSQLite(t, filepath.Join(t.TempDir(), "warden.db"))
	defer s.Close()
	f := &failingLoads{backend: s, ch: make(chan store.Change, 16)}
	r := openRegistry(t, taint.Config{}, f)
	const x = "ai-agent://dev/elsewhere"
	if _, err := s.AddTaint(ctx, store.Taint{AgentID: x, Name: taint.Untrusted, DecisionID: "d", CreatedAt: time.Now(), LastReadAt: time.Now()}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	f.fail.Store(true)
	f.ch <- store.Change{Kind: store.ChangeResync}
	waitFor(t, func() bool { _, err := r.Held(x, ""); return errors.Is(err, taint.ErrUnavailable) })
	f.fail.Store(false)
	waitFor(t, func() bool { h, err := r.Held(x, ""); return err == nil && len(h) == 1 })
}

// lateIndex is a store that has not yet heard of a taint's audit index.
type lateIndex struct{ failingLoads }

func (l *lateIndex) SetTaintIndex(context.Context, store.Taint, int64) error {
	return errors.New("not yet")
}

// A reload that reads a taint before the store has its audit index keeps
// the index this replica knows: policy sees where the taint came from.
// (A reload racing the index's write left the source at -1.)
func TestReloadKeepsTheAuditIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openSQLite(t, filepath.Join(t.TempDir(), "warden.db"))
	defer s.Close()
	l := &lateIndex{failingLoads{backend: s, ch: make(chan store.Change, 16)}}
	r := openRegistry(t, taint.Config{}, l)
	const a, other = "ai-agent://dev/reader", "ai-agent://dev/elsewhere"
	tr := read(a, "")
	if _, err := r.Record(ctx, tr); err != nil {
		t.Fatal(err)
	}
	r.Indexed(ctx, tr, 7)
	if _, err := s.AddTaint(ctx, store.Taint{AgentID: other, Name: taint.Untrusted, DecisionID: "d", CreatedAt: time.Now(), LastReadAt: time.Now()}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	// The feed is followed in order: once the other agent's taint is
	// loaded, so is the reader's.
	l.ch <- store.Change{Kind: store.ChangeTaint, Key: a}
	l.ch <- store.Change{Kind: store.ChangeTaint, Key: other}
	waitFor(t, func() bool { h, _ := r.Held(other, ""); return len(h) == 1 })
	h, err := r.Held(a, "")
	if err != nil || len(h) != 1 || h[0].AuditIndex != 7 {
		t.Fatalf("after a reload: %+v, %v", h, err)
	}
}

// A taint held in the agent's scope because the agent holds MaxPerAgent
// task taints still gets its audit index. (The index was recorded under
// the task the decision named, and matched nothing.)
func TestIndexOfATaintMovedToTheAgentsScope(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openSQLite(t, filepath.Join(t.TempDir(), "warden.db"))
	defer s.Close()
	r := openRegistry(t, taint.Config{}, s)
	const a = "ai-agent://dev/busy"
	for i := range taint.MaxPerAgent {
		if _, err := r.Record(ctx, read(a, fmt.Sprintf("task-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	last := read(a, "one-too-many")
	if _, err := r.Record(ctx, last); err != nil {
		t.Fatal(err)
	}
	r.Indexed(ctx, last, 42)
	h, err := r.Held(a, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range h {
		if x.DecisionID == last.DecisionID {
			if x.Task != "" || x.AuditIndex != 42 {
				t.Fatalf("the taint past the bound: %+v", x)
			}
			stored, _ := s.Taints(ctx, a)
			for _, y := range stored {
				if y.DecisionID == last.DecisionID && y.AuditIndex != 42 {
					t.Fatalf("the store has its index as %d", y.AuditIndex)
				}
			}
			return
		}
	}
	t.Fatalf("the taint past the bound is not held: %v", names(h))
}

// heldLoads holds the next load of one agent's taints ("": every agent's)
// once armed, after it has read the store, until the test lets it go.
type heldLoads struct {
	failingLoads
	agent   string
	armed   atomic.Bool
	read    chan struct{}
	release chan struct{}
	once    sync.Once
}

// let lets a held load go.
func (h *heldLoads) let() { h.once.Do(func() { close(h.release) }) }

func (h *heldLoads) Taints(ctx context.Context, agent string) ([]store.Taint, error) {
	ts, err := h.backend.Taints(ctx, agent)
	if agent == h.agent && h.armed.Swap(false) {
		close(h.read)
		<-h.release
	}
	return ts, err
}

// A reload that read the store before a taint's write completed keeps the
// taint. (It replaced what the registry held by what it read, and the
// agent's next decision saw no taint until the write's own change came.)
func TestReloadKeepsATaintWrittenMeanwhile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openSQLite(t, filepath.Join(t.TempDir(), "warden.db"))
	defer s.Close()
	const a, other = "ai-agent://dev/racing", "ai-agent://dev/bystander"
	h := &heldLoads{failingLoads: failingLoads{backend: s, ch: make(chan store.Change, 16)}, agent: a,
		read: make(chan struct{}), release: make(chan struct{})}
	r := openRegistry(t, taint.Config{}, h)
	t.Cleanup(h.let) // before the registry closes, also when the test fails
	if _, err := r.Record(ctx, read(a, "t1")); err != nil {
		t.Fatal(err)
	}
	h.armed.Store(true)
	h.ch <- store.Change{Kind: store.ChangeTaint, Key: a}
	<-h.read
	if _, err := r.Record(ctx, read(a, "t2")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddTaint(ctx, store.Taint{AgentID: other, Name: taint.Untrusted, DecisionID: "d", CreatedAt: time.Now(), LastReadAt: time.Now()}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	h.let()
	h.ch <- store.Change{Kind: store.ChangeTaint, Key: other}
	waitFor(t, func() bool { x, _ := r.Held(other, ""); return len(x) == 1 })
	got, err := r.Held(a, "")
	if err != nil || len(got) != 2 {
		t.Fatalf("after a reload that raced the write: %v, %v", names(got), err)
	}
}

// A resync (the change feed lost changes) denies every decision until the
// reload it starts has read every taint. (Decisions went on what the
// replica held while it read.)
func TestResyncDeniesUntilReloaded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openSQLite(t, filepath.Join(t.TempDir(), "warden.db"))
	defer s.Close()
	h := &heldLoads{failingLoads: failingLoads{backend: s, ch: make(chan store.Change, 16)}, agent: "",
		read: make(chan struct{}), release: make(chan struct{})}
	r := openRegistry(t, taint.Config{}, h)
	t.Cleanup(h.let) // before the registry closes, also when the test fails
	const a = "ai-agent://dev/elsewhere"
	if _, err := s.AddTaint(ctx, store.Taint{AgentID: a, Name: taint.Untrusted, DecisionID: "d", CreatedAt: time.Now(), LastReadAt: time.Now()}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	h.armed.Store(true)
	h.ch <- store.Change{Kind: store.ChangeResync}
	<-h.read
	if held, err := r.Held(a, ""); !errors.Is(err, taint.ErrUnavailable) {
		t.Fatalf("during the reload: %v, %v", names(held), err)
	}
	h.let()
	waitFor(t, func() bool { held, err := r.Held(a, ""); return err == nil && len(held) == 1 })
}
