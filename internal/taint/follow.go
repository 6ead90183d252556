package taint

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/warden-run/warden/internal/store"
)

// storeTimeout bounds one read of the store.
const storeTimeout = 5 * time.Second

// run follows the change feed, retries agents that could not be loaded,
// and sweeps expired taints, until ctx ends.
func (r *Registry) run(ctx context.Context, changes <-chan store.Change) {
	defer close(r.done)
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	every := time.Minute
	if r.cfg.ExpireAfter > 0 {
		every = min(max(r.cfg.ExpireAfter/4, time.Second), time.Minute)
	}
	sweep := time.NewTicker(every)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case c, ok := <-changes:
			if !ok {
				return
			}
			switch c.Kind {
			case store.ChangeTaint:
				r.reloadAgent(ctx, c.Key)
			case store.ChangeResync:
				// Changes were lost: until everything is read again, no
				// decision goes on what this replica holds.
				r.mu.Lock()
				r.stale = true
				r.mu.Unlock()
				if err := r.reloadAll(ctx); err != nil && ctx.Err() == nil {
					r.log.Error("taint: reload failed; every decision is denied until it works", "err", err)
				}
			}
		case <-retry.C:
			r.retry(ctx)
		case <-sweep.C:
			r.sweep(ctx)
		}
	}
}

// reloadAgent replaces what the registry holds of one agent by what the
// store has, keeping taints whose writes are on their way. When the store
// does not answer, the agent is stale until it does.
func (r *Registry) reloadAgent(ctx context.Context, agent string) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	r.mu.RLock()
	since := r.writes
	r.mu.RUnlock()
	ts, err := r.st.Taints(ctx, agent)
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.agents[agent]
	if a == nil {
		a = &agentTaints{}
		r.agents[agent] = a
	}
	if err != nil {
		if !a.stale {
			r.log.Warn("taint: an agent's taints could not be loaded; its decisions are denied until they are", "agent", agent, "err", err)
		}
		a.stale = true
		return
	}
	r.replace(a, ts, since)
	if len(a.held) == 0 {
		delete(r.agents, agent)
	}
}

// reloadAll replaces everything by what the store has.
func (r *Registry) reloadAll(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 4*storeTimeout)
	defer cancel()
	r.mu.RLock()
	since := r.writes
	r.mu.RUnlock()
	ts, err := r.st.Taints(ctx, "")
	if err != nil {
		r.mu.Lock()
		r.stale = true
		r.mu.Unlock()
		return fmt.Errorf("taint: %w", err)
	}
	byAgent := map[string][]store.Taint{}
	for _, t := range ts {
		byAgent[t.AgentID] = append(byAgent[t.AgentID], t)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stale = false
	for id, a := range r.agents {
		r.replace(a, byAgent[id], since)
		if len(a.held) == 0 {
			delete(r.agents, id)
		}
		delete(byAgent, id)
	}
	for id, list := range byAgent {
		a := &agentTaints{}
		r.replace(a, list, since)
		r.agents[id] = a
	}
	return nil
}

// replace sets a's taints to ts, read from the store once this replica
// had completed since writes, keeping those the read may have missed
// (being written, whose write failed, or written after it began), and a
// later last read and an audit index this replica saw. Called with r.mu
// held.
func (r *Registry) replace(a *agentTaints, ts []store.Taint, since uint64) {
	var out []*held
	for _, old := range a.held {
		if old.writing != nil || old.unwritten || old.wrote > since {
			out = append(out, old)
		}
	}
	for _, t := range ts {
		if slices.ContainsFunc(out, func(x *held) bool { return x.t.Task == t.Task && x.t.Name == t.Name }) {
			continue // this replica's newer one
		}
		h := &held{t: t, stored: t.LastReadAt}
		for _, old := range a.held {
			if old.t.Task != t.Task || old.t.Name != t.Name {
				continue
			}
			if old.t.LastReadAt.After(t.LastReadAt) {
				h.t.LastReadAt = old.t.LastReadAt
			}
			if h.t.AuditIndex < 0 && old.t.DecisionID == t.DecisionID {
				// The store has not heard of the index yet.
				h.t.AuditIndex = old.t.AuditIndex
			}
		}
		out = append(out, h)
	}
	a.held, a.stale = out, false
}

// retry reloads what could not be loaded (everything, or stale agents),
// and writes the taints whose write failed.
func (r *Registry) retry(ctx context.Context) {
	r.mu.RLock()
	all := r.stale
	r.mu.RUnlock()
	if all {
		if err := r.reloadAll(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("taint: reload failed again; decisions are denied until it works", "err", err)
		}
	}
	for _, id := range r.staleAgents() {
		r.reloadAgent(ctx, id)
	}
	r.mu.Lock()
	var unwritten []*held
	for _, a := range r.agents {
		for _, h := range a.held {
			if h.unwritten && h.writing == nil {
				unwritten = append(unwritten, h)
			}
		}
	}
	r.mu.Unlock()
	for _, h := range unwritten {
		wctx, cancel := context.WithTimeout(ctx, storeTimeout)
		r.mu.Lock()
		if h.unwritten && h.writing == nil {
			r.write(wctx, h, time.Time{}) // unlocks; an error is tried again next time
		} else {
			r.mu.Unlock()
		}
		cancel()
	}
}

func (r *Registry) staleAgents() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []string
	for id, a := range r.agents {
		if a.stale {
			out = append(out, id)
		}
	}
	return out
}

// sweep removes from the store the taints whose time is up, which records
// each removal in the audit log (through the store's events). Replicas
// sweeping at once remove each taint once. The margin leaves a last read
// this replica has not written yet its due.
func (r *Registry) sweep(ctx context.Context) {
	if r.cfg.ExpireAfter <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	now := store.Time(r.now())
	ev := store.Event{Time: now, Actor: "warden:taint-expiry", Action: "taint.expire",
		Detail: mustJSON(map[string]string{"expire_after": r.cfg.ExpireAfter.String()})}
	gone, err := r.st.ExpireTaints(ctx, now.Add(-r.cfg.ExpireAfter-r.touch), ev)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("taint: expired taints could not be removed", "err", err)
		}
		return
	}
	if len(gone) > 0 {
		r.log.Info("taint: expired", "taints", len(gone))
	}
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
