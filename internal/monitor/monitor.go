// Package monitor watches how each agent behaves: it follows the audit
// log, keeps a baseline per agent, fires named signals when behaviour
// drifts from it, and scores each agent's risk for the next decision.
//
// The monitor reads the audit log rather than a side channel from the
// decision pipeline: a decision never waits for it, every replica's
// decisions reach it (on PostgreSQL the log is shared), nothing it has not
// read is lost (its position is the log's index), and rebuilding it from
// the log runs the very code that built it live.
package monitor

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/store"
)

// LogReader is what the monitor reads of the audit log.
type LogReader interface {
	Size(ctx context.Context) (int64, error)
	Read(ctx context.Context, from, to int64) ([][]byte, error)
}

// SnapshotStore keeps the model's snapshot (store.MetaStore).
type SnapshotStore interface {
	Meta(ctx context.Context, key string) ([]byte, error)
	PutMetaIfAbsent(ctx context.Context, key string, value []byte) (bool, error)
	SwapMeta(ctx context.Context, key string, old, value []byte) (bool, error)
}

// snapshotKey is the snapshot's key in the store's meta values.
const snapshotKey = "monitor.snapshot"

// Options configures a Monitor.
type Options struct {
	Model Config
	// StaleAfter is how long the monitor may be behind the log's end (or
	// stopped) before the risk it reports is stale. Default 5s.
	StaleAfter time.Duration
	// Poll is how often the monitor looks for entries other processes
	// appended. Default 100ms.
	Poll time.Duration
	// SnapshotEvery is how often the model is saved. Default 30s.
	SnapshotEvery time.Duration
	// Snapshots, when set, keeps the model across restarts. Persist says
	// whether this process writes it (the one leading the log).
	Snapshots SnapshotStore
	Persist   func() bool
	// OnFire, when set, is called with each event that fired signals and
	// the agent's risk after it, in the log's order, in the monitor's
	// goroutine.
	OnFire func(Alert)
	Logger *slog.Logger
	Now    func() time.Time
}

// Alert is an event that fired signals.
type Alert struct {
	Event   Event
	Signals []string
	Risk    Risk
}

// Monitor follows the audit log into a Model and answers the risk of each
// agent. Risk is safe for concurrent use and does not wait for the model.
type Monitor struct {
	opts Options
	log  LogReader
	lg   *slog.Logger
	now  func() time.Time
	wake chan struct{}

	cfg   Config     // the model's, defaults filled
	mu    sync.Mutex // the model and saved
	model *Model
	// saved is the SHA-256 of the snapshot last saved or read (nil for
	// none): the snapshot's bytes are read back for the compare-and-swap
	// of the next save, rather than kept, which doubled the model's memory.
	saved *[sha256.Size]byte

	cells      sync.Map     // agent -> *cell
	caughtUpAt atomic.Int64 // unix nanos the monitor last stood at the log's end
	position   atomic.Int64
	skipped    atomic.Int64 // entries that could not be decoded
	applied    atomic.Int64
	wasStale   bool         // the run loop's: whether it last found itself stale
	gen        atomic.Int64 // rebuilds so far

	stop context.CancelFunc
	done chan struct{}
}

// New makes a monitor over the audit log; Start starts it.
func New(opts Options, log LogReader) (*Monitor, error) {
	model, err := NewModel(opts.Model)
	if err != nil {
		return nil, err
	}
	if opts.StaleAfter <= 0 {
		opts.StaleAfter = 5 * time.Second
	}
	if opts.Poll <= 0 {
		opts.Poll = 100 * time.Millisecond
	}
	if opts.SnapshotEvery <= 0 {
		opts.SnapshotEvery = 30 * time.Second
	}
	if opts.Persist == nil {
		opts.Persist = func() bool { return true }
	}
	lg := opts.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	m := &Monitor{opts: opts, log: log, lg: lg, now: now, wake: make(chan struct{}, 1), model: model, cfg: model.cfg}
	m.position.Store(-1)
	return m, nil
}

// Start loads the last snapshot, if any, and follows the log from there
// until Close. A snapshot that cannot be read is set aside: the model is
// rebuilt from the whole log.
func (m *Monitor) Start(ctx context.Context) error {
	if m.opts.Snapshots != nil {
		b, err := m.opts.Snapshots.Meta(ctx, snapshotKey)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return fmt.Errorf("monitor: read snapshot: %w", err)
		default:
			m.saved = digest(b)
			if err := m.model.Restore(b); err != nil {
				m.lg.Warn("monitor: snapshot unreadable; rebuilding from the audit log", "err", err)
				m.model, _ = NewModel(m.opts.Model)
			}
		}
	}
	m.publishAll()
	ctx, m.stop = context.WithCancel(context.WithoutCancel(ctx))
	m.done = make(chan struct{})
	go m.run(ctx)
	return nil
}

// Close stops following the log and saves the model.
func (m *Monitor) Close() {
	if m.stop == nil {
		return
	}
	m.stop()
	<-m.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m.save(ctx)
}

// Wake tells the monitor the log has grown; the audit log calls it after
// each commit (audit.Log.Watch).
func (m *Monitor) Wake() chan<- struct{} { return m.wake }

// Risk is agent's risk now, stale when the monitor is behind.
func (m *Monitor) Risk(agent string) Risk {
	now := m.now()
	r := newAgentRisk()
	if c, ok := m.cells.Load(agent); ok {
		r = c.(*cell).risk(&m.cfg, now)
	}
	r.Stale = now.Sub(time.Unix(0, m.caughtUpAt.Load())) > m.opts.StaleAfter
	return r
}

// Rebuild forgets the model and reads the whole audit log again, from its
// first entry; meanwhile decisions see each agent's risk as stale.
func (m *Monitor) Rebuild() {
	m.mu.Lock()
	m.gen.Add(1)
	m.model, _ = NewModel(m.opts.Model) // the options were checked by New
	m.cells.Clear()
	m.position.Store(-1)
	m.caughtUpAt.Store(0)
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Report is what the monitor knows of agent; false when it knows nothing.
func (m *Monitor) Report(agent string) (AgentReport, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.model.agents[agent]
	if st == nil {
		return AgentReport{}, false
	}
	rep := AgentReport{Agent: agent, Risk: m.Risk(agent), First: st.First, Last: st.Last, Events: st.Events,
		Firings: map[string]*Firing{}, Position: m.model.Position}
	for k, f := range st.Fired {
		c := *f
		c.Evidence = append([]int64(nil), f.Evidence...)
		rep.Firings[k] = &c
	}
	return rep, true
}

// Stats says how far the monitor has read.
type Stats struct {
	// Position is the index of the last entry read.
	Position int64 `json:"position"`
	Applied  int64 `json:"applied"`
	// Skipped counts entries that could not be decoded.
	Skipped    int64     `json:"skipped"`
	CaughtUpAt time.Time `json:"caught_up_at"`
}

// Stats reports the monitor's progress.
func (m *Monitor) Stats() Stats {
	return Stats{Position: m.position.Load(), Applied: m.applied.Load(), Skipped: m.skipped.Load(),
		CaughtUpAt: time.Unix(0, m.caughtUpAt.Load()).UTC()}
}

const readBatch = 1000

func (m *Monitor) run(ctx context.Context) {
	defer close(m.done)
	poll := time.NewTicker(m.opts.Poll)
	defer poll.Stop()
	saveAt := m.now().Add(m.opts.SnapshotEvery)
	backoff := time.Duration(0)
	for {
		n, err := m.step(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			m.lg.Warn("monitor: reading the audit log failed; retrying", "err", err, "retry_in", backoff)
			m.noteStale()
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		m.noteStale()
		if now := m.now(); now.After(saveAt) {
			saveAt = now.Add(m.opts.SnapshotEvery)
			m.save(ctx)
		}
		if n == readBatch {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-m.wake:
		case <-poll.C:
		}
	}
}

// noteStale logs when the monitor falls behind the log for longer than
// StaleAfter, and when it has caught up again: decisions meanwhile carry
// stale risk, which an operator must hear of.
func (m *Monitor) noteStale() {
	stale := m.now().Sub(time.Unix(0, m.caughtUpAt.Load())) > m.opts.StaleAfter
	if stale == m.wasStale {
		return
	}
	m.wasStale = stale
	if stale {
		m.lg.Error("monitor: behind the audit log for longer than stale_after; decisions see stale risk",
			"position", m.position.Load(), "stale_after", m.opts.StaleAfter)
	} else {
		m.lg.Info("monitor: caught up with the audit log", "position", m.position.Load())
	}
}

// step applies the next entries, up to readBatch, and returns how many it read.
func (m *Monitor) step(ctx context.Context) (int, error) {
	gen := m.gen.Load()
	asked := m.now()
	size, err := m.log.Size(ctx)
	if err != nil {
		return 0, err
	}
	next := m.position.Load() + 1
	if size <= next {
		m.caughtUp(gen, asked)
		return 0, nil
	}
	to := min(size, next+readBatch)
	data, err := m.log.Read(ctx, next, to)
	if err != nil {
		return 0, err
	}
	m.applyAll(next, data)
	if to == size {
		m.caughtUp(gen, asked)
	}
	return len(data), nil
}

// caughtUp records that the monitor stood at the log's end at asked,
// unless the model was rebuilt since the step of generation gen began.
func (m *Monitor) caughtUp(gen int64, asked time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gen.Load() == gen {
		m.caughtUpAt.Store(asked.UnixNano())
	}
}

// applyAll applies the entries from index next on.
func (m *Monitor) applyAll(next int64, data [][]byte) {
	var alerts []Alert
	defer func() {
		for _, a := range alerts {
			m.opts.OnFire(a)
		}
	}()
	m.mu.Lock()
	defer m.mu.Unlock()
	if next != m.model.Position+1 {
		return // the model was rebuilt while these were read
	}
	for i, d := range data {
		idx := next + int64(i)
		// The log's own entries, read from it: their fields, without
		// checking their canonical form again (audit verify does that).
		ev, ok, err := DecodeLeaf(d)
		if err != nil {
			// An input of another shape than the model reads (a redact
			// path that replaced a list, say): the entry without it.
			var e *audit.Entry
			if e, err = audit.PeekEntry(d); err == nil {
				ev, ok = Decode(e)
			}
		}
		if err != nil {
			m.skipped.Add(1)
			m.lg.Error("monitor: an audit entry could not be read; skipped", "index", idx, "err", err)
			m.model.Position = idx
			continue
		}
		if !ok {
			m.model.Position = idx
			continue
		}
		ev.Index = idx
		learning := m.model.learning(ev.Agent)
		fired := m.model.Apply(ev)
		m.applied.Add(1)
		// Readers see an agent's risk change when a signal fires, when it
		// is released, when it is first seen, and when it has its count of
		// decisions to learn from (the time it learns for is read off the
		// clock).
		if len(fired) > 0 || ev.Kind == EventReleased || learning != m.model.learning(ev.Agent) {
			m.publish(ev.Agent)
		}
		if len(fired) > 0 && m.opts.OnFire != nil {
			alerts = append(alerts, Alert{Event: ev, Signals: fired, Risk: m.Risk(ev.Agent)})
		}
	}
	m.position.Store(m.model.Position)
}

// publish makes agent's current state what readers see; m.mu is held.
func (m *Monitor) publish(agent string) {
	if st := m.model.agents[agent]; st != nil {
		m.cells.Store(agent, m.model.cell(st))
	}
}

func (m *Monitor) publishAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cells.Clear()
	for id := range m.model.agents {
		m.publish(id)
	}
	m.position.Store(m.model.Position)
}

// save writes the model's snapshot when this process leads; a failure is
// logged and retried at the next interval (the log holds everything the
// snapshot would).
func (m *Monitor) save(ctx context.Context) {
	if m.opts.Snapshots == nil || !m.opts.Persist() {
		return
	}
	m.mu.Lock()
	b, err := m.model.MarshalJSON()
	last := m.saved
	m.mu.Unlock()
	sum := digest(b)
	if err != nil || last != nil && *sum == *last {
		return
	}
	var ok bool
	if last == nil {
		ok, err = m.opts.Snapshots.PutMetaIfAbsent(ctx, snapshotKey, b)
	} else {
		// The stored snapshot is replaced only if it is still the one this
		// process saved or read last.
		var cur []byte
		if cur, err = m.opts.Snapshots.Meta(ctx, snapshotKey); err == nil {
			if *digest(cur) != *last {
				m.adopt(cur)
				return
			}
			ok, err = m.opts.Snapshots.SwapMeta(ctx, snapshotKey, cur, b)
		}
	}
	switch {
	case err != nil:
		m.lg.Warn("monitor: saving the model failed", "err", err)
	case !ok:
		// Another process saved one meanwhile: take it as the base of the next swap.
		if cur, err := m.opts.Snapshots.Meta(ctx, snapshotKey); err == nil {
			m.adopt(cur)
		}
	default:
		m.mu.Lock()
		m.saved = sum
		m.mu.Unlock()
	}
}

// adopt takes snapshot b, saved by another process, as the base of the
// next save.
func (m *Monitor) adopt(b []byte) {
	m.mu.Lock()
	m.saved = digest(b)
	m.mu.Unlock()
}

// digest is a snapshot's SHA-256.
func digest(b []byte) *[sha256.Size]byte {
	sum := sha256.Sum256(b)
	return &sum
}
