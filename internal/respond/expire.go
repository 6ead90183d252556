package respond

import (
	"context"
	"time"

	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
)

// expireEvery is how often the responder looks for responses to end.
const expireEvery = time.Second

func (r *Responder) expireLoop(ctx context.Context) {
	t := time.NewTicker(expireEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if r.cfg.Leading() {
				if err := r.Expire(ctx); err != nil && ctx.Err() == nil {
					r.lg.Warn("response: ending expired responses failed; retrying", "err", err)
				}
			}
		}
	}
}

// Expire ends the responses whose time is up: an agent restricted or
// quarantined by the responder is active again, unless a person changed
// its status meanwhile (then the response is only marked ended). A
// response whose status a person already lifted is marked ended too.
func (r *Responder) Expire(ctx context.Context) error {
	open, err := r.incidents.Incidents(ctx, store.IncidentFilter{Open: true})
	if err != nil {
		return err
	}
	now := r.now()
	for _, inc := range open {
		if err := r.expireIncident(ctx, inc, now); err != nil {
			return err
		}
	}
	return nil
}

func (r *Responder) expireIncident(ctx context.Context, inc store.Incident, now time.Time) error {
	agent, err := r.agents.Agent(ctx, inc.AgentID)
	if err != nil {
		return err
	}
	type ending struct {
		i    int
		note string
	}
	var ends []ending
	for i, act := range inc.Actions {
		status, sets := statusOf[act.Action]
		if act.Ended.IsZero() && act.Action == policy.ResponseStepUp && !act.Expires.IsZero() && !now.Before(act.Expires) {
			ends = append(ends, ending{i, "step-up expired"}) // it ends by itself: the time is in the agent's record
			continue
		}
		if !act.Ended.IsZero() || !sets {
			continue
		}
		switch {
		case agent.Status != status:
			ends = append(ends, ending{i, "lifted: the agent is " + string(agent.Status) + " now"})
		case !act.Expires.IsZero() && !now.Before(act.Expires) && r.setByPerson(ctx, agent, act.At):
			// Someone changed the agent since (set it as it is again, say):
			// the status is theirs now, not the response's to undo.
			ends = append(ends, ending{i, act.Action + " expired; the agent was changed since, so its status stays"})
		case !act.Expires.IsZero() && !now.Before(act.Expires):
			if _, err := r.agents.SetStatus(ctx, Actor, agent.ID, store.StatusActive, act.Action+" expired"); err != nil {
				return err
			}
			agent.Status = store.StatusActive
			ends = append(ends, ending{i, act.Action + " expired"})
		}
	}
	if len(ends) == 0 {
		return nil
	}
	_, err = r.incidents.UpdateIncident(ctx, inc.ID, store.Event{}, func(cur *store.Incident) error {
		cur.UpdatedAt = now
		for _, e := range ends {
			if e.i < len(cur.Actions) && cur.Actions[e.i].Ended.IsZero() {
				cur.Actions[e.i].Ended = store.Time(now)
				cur.Note(store.IncidentEvent{Time: store.Time(now), Kind: "expired", Action: cur.Actions[e.i].Action, Actor: Actor, Note: e.note})
			}
		}
		return nil
	})
	return err
}

// setByPerson reports whether someone other than the responder set the
// agent's status after t (on a doubt, yes: the status stays).
func (r *Responder) setByPerson(ctx context.Context, agent store.Agent, t time.Time) bool {
	set, err := r.statusSetSince(ctx, agent, t)
	return set || err != nil
}

// statusOf is the status each response that sets one sets.
var statusOf = map[string]store.AgentStatus{
	policy.ResponseRestrict:   store.StatusRestricted,
	policy.ResponseQuarantine: store.StatusQuarantined,
	policy.ResponseDisable:    store.StatusDisabled,
}
