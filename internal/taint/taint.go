// Package taint keeps what each agent's context holds that it must not
// trust. The decision point sets a taint when it allows an agent to read an
// untrusted source, and every later decision of that agent sees it, at
// every enforcement point and on every replica, until an operator clears it
// or the configured time after the last such read has passed.
package taint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/warden-run/warden/internal/store"
)

// Untrusted is the taint a read of an untrusted source sets.
const Untrusted = "untrusted_content"

// ErrUnavailable means the agent's taints cannot be known now (the store
// did not answer); decisions about it are denied until they can.
var ErrUnavailable = errors.New("taint state unavailable")

// MaxPerAgent bounds the taints one agent holds across its scopes. A taint
// past it is recorded in the agent's own scope instead of a task's, which
// every later decision of the agent sees: nothing is dropped.
const MaxPerAgent = 256

// Config configures a Registry.
type Config struct {
	// ExpireAfter ends a taint this long after the agent's last read that
	// set or renewed it. Zero keeps taints until an operator clears them.
	ExpireAfter time.Duration
	Logger      *slog.Logger
	Now         func() time.Time
}

// taintStore is what the registry needs of the store.
type taintStore interface {
	store.TaintStore
	store.ChangeFeed
}

// Registry holds every agent's taints, loaded from the store and kept
// current by its change feed. It is safe for concurrent use.
type Registry struct {
	cfg   Config
	st    taintStore
	log   *slog.Logger
	now   func() time.Time
	touch time.Duration // how far a last read may run ahead of the store's

	mu     sync.RWMutex
	agents map[string]*agentTaints
	// stale is set when every agent's taints must be read again (the
	// change feed lost changes) until a reload of them works: another
	// replica's new taints may be missing, so every decision is denied
	// meanwhile.
	stale bool
	// writes counts the writes of taints this replica completed: a reload
	// keeps the taints written after it began to read.
	writes uint64

	stop context.CancelFunc
	done chan struct{}
}

type agentTaints struct {
	held []*held
	// stale is set when a change to the agent's taints was announced but
	// could not be loaded: its decisions are denied until a reload works.
	stale bool
}

type held struct {
	t store.Taint
	// stored is the last read the store has.
	stored time.Time
	// writing, while a write of the taint to the store is on its way, is
	// closed when it is done: a read the taint covers waits for it.
	writing chan struct{}
	// unwritten says the store does not have the taint (its write
	// failed): it is kept here across reloads, every read it covers waits
	// for it to be written, and the registry writes it again until it is.
	unwritten bool
	// wrote is the registry's count of writes when this one completed.
	wrote uint64
}

// Open loads every taint from st and follows its change feed until Close.
func Open(ctx context.Context, cfg Config, st taintStore) (*Registry, error) {
	if cfg.ExpireAfter < 0 {
		return nil, errors.New("taint: ExpireAfter must not be negative")
	}
	r := &Registry{cfg: cfg, st: st, log: cfg.Logger, now: cfg.Now, agents: map[string]*agentTaints{}, done: make(chan struct{})}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	r.touch = max(cfg.ExpireAfter/8, time.Second)
	bg, stop := context.WithCancel(context.Background())
	r.stop = stop
	changes := st.Subscribe(bg)
	if err := r.reloadAll(ctx); err != nil {
		stop()
		return nil, err
	}
	go r.run(bg, changes)
	return r, nil
}

// Close stops following the store.
func (r *Registry) Close() {
	r.stop()
	<-r.done
}

// Held returns the taints a decision of agent sees, by name: the ones of
// the agent as a whole and of its task or, for a token bound to no task,
// every one the agent holds, so that no token sheds what another read.
// Expired taints are left out. ErrUnavailable when they cannot be known.
func (r *Registry) Held(agent, task string) ([]store.Taint, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.stale {
		return nil, fmt.Errorf("%w: the taints of other replicas could not be loaded", ErrUnavailable)
	}
	a := r.agents[agent]
	if a == nil {
		return nil, nil
	}
	if a.stale {
		return nil, fmt.Errorf("%w: agent %s", ErrUnavailable, agent)
	}
	now := r.now()
	var out []store.Taint
	for _, h := range a.held {
		if (task == "" || h.t.Task == "" || h.t.Task == task) && !r.expired(h.t, now) {
			out = append(out, h.t)
		}
	}
	slices.SortFunc(out, func(a, b store.Taint) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Task, b.Task)
	})
	return out, nil
}

func (r *Registry) expired(t store.Taint, now time.Time) bool {
	return r.cfg.ExpireAfter > 0 && now.Sub(t.LastReadAt) > r.cfg.ExpireAfter
}

// Record sets taint t (AgentID, Task, Name and its source) as of a read
// allowed now. It returns once the store has the taint, for every replica,
// so that the read can go ahead; on an error the read must not go ahead,
// and the taint stays set all the same (a failed write is tried again). A
// taint the agent holds already only has its last read moved, in the store
// now and then. It reports whether the taint is new.
func (r *Registry) Record(ctx context.Context, t store.Taint) (bool, error) {
	now := store.Time(r.now())
	t.CreatedAt, t.LastReadAt, t.AuditIndex = now, now, -1
	var renewBefore time.Time // a taint last read before it was over
	if r.cfg.ExpireAfter > 0 {
		renewBefore = now.Add(-r.cfg.ExpireAfter)
	}
	r.mu.Lock()
	a := r.agents[t.AgentID]
	if a == nil {
		a = &agentTaints{}
		r.agents[t.AgentID] = a
	}
	if t.Task != "" && len(a.held) >= MaxPerAgent {
		t.Task = ""
	}
	var h *held
	for _, x := range a.held {
		if x.t.Task == t.Task && x.t.Name == t.Name && (x.writing != nil || x.unwritten || !r.expired(x.t, now)) {
			h = x
		}
	}
	if h == nil {
		a.held = slices.DeleteFunc(a.held, func(x *held) bool { return x.t.Task == t.Task && x.t.Name == t.Name })
		h = &held{t: t, stored: now}
		a.held = append(a.held, h)
		return r.write(ctx, h, renewBefore) // unlocks
	}
	h.t.LastReadAt = now
	for h.writing != nil { // a write of it is on its way: this read waits for it
		w := h.writing
		r.mu.Unlock()
		select {
		case <-w:
		case <-ctx.Done():
			return false, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
		}
		r.mu.Lock()
	}
	if h.unwritten {
		_, err := r.write(ctx, h, renewBefore) // unlocks
		return false, err
	}
	due := now.Sub(h.stored) >= r.touch && r.cfg.ExpireAfter > 0
	if due {
		h.stored = now
	}
	touch := h.t
	r.mu.Unlock()
	if due {
		if _, err := r.st.AddTaint(ctx, touch, time.Time{}); err != nil {
			// Written again until the store has it: until then the
			// store's last read lags, and a sweep could end the taint.
			r.log.Warn("taint: could not record a later read; it is written again until it is", "agent", t.AgentID, "err", err)
			r.mu.Lock()
			h.unwritten = true
			r.mu.Unlock()
		}
	}
	return false, nil
}

// write stores h's taint. It is called with r.mu held, and unlocks it.
func (r *Registry) write(ctx context.Context, h *held, renewBefore time.Time) (bool, error) {
	done := make(chan struct{})
	h.writing = done
	t := h.t
	r.mu.Unlock()
	created, err := r.st.AddTaint(ctx, t, renewBefore)
	r.mu.Lock()
	h.writing, h.unwritten = nil, err != nil
	if err == nil {
		r.writes++
		h.wrote = r.writes
	}
	close(done)
	r.mu.Unlock()
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return created, nil
}

// Indexed records the audit index of the decision that created t, once
// the decision is in the log. It is for the record: a failure is logged.
func (r *Registry) Indexed(ctx context.Context, t store.Taint, index int64) {
	r.mu.Lock()
	if a := r.agents[t.AgentID]; a != nil {
		for _, h := range a.held {
			if h.t.Name == t.Name && h.t.DecisionID == t.DecisionID {
				h.t.AuditIndex = index
				// The scope it is held in: past MaxPerAgent tasks, the
				// agent's own rather than the task the decision named.
				t.Task = h.t.Task
			}
		}
	}
	r.mu.Unlock()
	if err := r.st.SetTaintIndex(ctx, t, index); err != nil {
		r.log.Warn("taint: could not record the audit index of its decision", "agent", t.AgentID, "decision_id", t.DecisionID, "err", err)
	}
}

// Clear removes the selected taints on an operator's word (actor, with a
// reason, recorded with what was removed), and returns them.
func (r *Registry) Clear(ctx context.Context, actor string, sel store.TaintSelection, reason string) ([]store.Taint, error) {
	detail := map[string]string{"reason": reason}
	ev := store.Event{Time: store.Time(r.now()), Actor: actor, Action: "taint.clear", Target: sel.AgentID, Detail: mustJSON(detail)}
	gone, err := r.st.ClearTaints(ctx, sel, ev)
	if err != nil {
		return nil, err
	}
	// The feed reloads the agent too; this replica need not wait for it.
	r.mu.Lock()
	if a := r.agents[sel.AgentID]; a != nil {
		a.held = slices.DeleteFunc(a.held, func(h *held) bool {
			return h.writing == nil && !h.unwritten && (sel.AnyTask || h.t.Task == sel.Task)
		})
	}
	r.mu.Unlock()
	return gone, nil
}

// Of lists the taints the store holds for agent, expired ones included
// until they are swept, for operators.
func (r *Registry) Of(ctx context.Context, agent string) ([]store.Taint, error) {
	return r.st.Taints(ctx, agent)
}

// Count is the number of taints held and of the agents holding them.
func (r *Registry) Count() (taints, agents int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, a := range r.agents {
		if len(a.held) > 0 {
			taints += len(a.held)
			agents++
		}
	}
	return taints, agents
}
