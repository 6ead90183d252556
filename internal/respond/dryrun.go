package respond

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/warden-run/warden/internal/monitor"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
)

// DryRun plays alerts through a playbook as the responder would, and acts
// on nothing: which incidents would open, and what the playbook would do in
// each. It serves the replay of recorded traffic (warden monitor replay)
// and evaluations (bench/traffic). An episode ends when the agent's risk is
// low again, as a person resolving the incident would end it.
type DryRun struct {
	engine    *policy.Engine
	open      map[string]*DryIncident
	Incidents []*DryIncident
}

// DryIncident is an incident a dry run opened.
type DryIncident struct {
	Agent  string    `json:"agent"`
	Opened time.Time `json:"opened"`
	// Index is the audit index of the entry whose alert opened it.
	Index int64 `json:"audit_index"`
	// Level is the highest risk level it reached; Signals every signal
	// that fired in it.
	Level   string   `json:"level"`
	Signals []string `json:"signals"`
	// Actions are what the playbook would have done, in order, once each.
	Actions []string `json:"actions"`
	// Alerts counts the alerts in it.
	Alerts int `json:"alerts"`
}

// NewDryRun makes a dry run of the playbook of engine's bundle.
func NewDryRun(engine *policy.Engine) *DryRun {
	return &DryRun{engine: engine, open: map[string]*DryIncident{}}
}

// Observe is told of the agent's risk after each of its events: an open
// episode ends once its risk is low.
func (d *DryRun) Observe(agent string, r monitor.Risk) {
	if d.open[agent] != nil && r.Level == monitor.LevelLow {
		delete(d.open, agent)
	}
}

// Alert evaluates the playbook on a, for an agent of roles, and returns what
// it asks for and the agent's incident (nil when the playbook asks for
// nothing and none is open). A playbook that fails is an error.
func (d *DryRun) Alert(ctx context.Context, a monitor.Alert, roles []string) ([]policy.ResponseAction, *DryIncident, error) {
	inc := d.open[a.Event.Agent]
	rec := store.Agent{ID: a.Event.Agent, TrustDomain: trustDomain(a.Event.Agent), Roles: roles, Status: store.StatusActive}
	var open *store.Incident
	if inc != nil {
		open = &store.Incident{ID: "dry-run", Level: inc.Level}
		for _, act := range inc.Actions {
			open.Actions = append(open.Actions, store.IncidentAction{Action: act})
		}
	}
	actions, _, err := d.engine.Respond(ctx, Input(rec, a, open), a.Event.Time)
	if err != nil {
		return nil, inc, err
	}
	if inc == nil && len(actions) == 0 {
		return nil, nil, nil
	}
	if inc == nil {
		inc = &DryIncident{Agent: a.Event.Agent, Opened: a.Event.Time, Index: a.Event.Index}
		d.open[a.Event.Agent] = inc
		d.Incidents = append(d.Incidents, inc)
	}
	inc.Alerts++
	if levelRank(a.Risk.Level) > levelRank(inc.Level) {
		inc.Level = a.Risk.Level
	}
	for _, s := range a.Signals {
		if !slices.Contains(inc.Signals, s) {
			inc.Signals = append(inc.Signals, s)
		}
	}
	for _, act := range actions {
		if !slices.Contains(inc.Actions, act.Action) {
			inc.Actions = append(inc.Actions, act.Action)
		}
	}
	return actions, inc, nil
}

func trustDomain(agent string) string {
	rest, _ := strings.CutPrefix(agent, "ai-agent://")
	td, _, _ := strings.Cut(rest, "/")
	return td
}

// Open is the agent's open incident, nil when it has none.
func (d *DryRun) Open(agent string) *DryIncident { return d.open[agent] }
