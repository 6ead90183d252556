// Package respond acts on the monitor's alerts without waiting for a
// person: the live bundle's playbook (data.warden.response) says what to do
// about an agent whose risk rose, and the responder does it (step it up,
// restrict, quarantine, revoke its tokens, disable it), records it in the
// agent's incident, and undoes what expires.
package respond

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/monitor"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
)

// Actor is who the responder's actions are recorded as; the audit log
// records its actions as response entries.
const Actor = audit.ResponseActor

// Agents is what the responder changes of agents (identity.Registry).
type Agents interface {
	Agent(ctx context.Context, id string) (store.Agent, error)
	SetStatus(ctx context.Context, actor, id string, status store.AgentStatus, reason string) (store.Agent, error)
	RevokeTokens(ctx context.Context, actor, id, reason string) (store.Agent, error)
	StepUp(ctx context.Context, actor, id string, until time.Time, reason string) (store.Agent, error)
}

// DefaultStepUp is how long a step-up lasts when the playbook gives no
// expiry: it always ends by itself.
const DefaultStepUp = time.Hour

// PositionStore keeps the responder's position (store.MetaStore).
type PositionStore interface {
	Meta(ctx context.Context, key string) ([]byte, error)
	PutMetaIfAbsent(ctx context.Context, key string, value []byte) (bool, error)
	SwapMeta(ctx context.Context, key string, old, value []byte) (bool, error)
}

// positionKey is the responder's position among the store's meta values.
const positionKey = "respond.position"

// Playbooks answers the live policy's playbook (policy.Registry).
type Playbooks interface {
	Live() *policy.Live
}

// Config configures a Responder.
type Config struct {
	// ActWithin is how old an alert may be and still be acted on, where
	// the position below does not say whether it was handled (a first
	// start on a long log). Default 15 minutes.
	ActWithin time.Duration
	// Positions, when set, keeps the audit index of the last alert handled
	// (store.MetaStore), so that a restart or another replica taking the
	// lead neither repeats nor skips alerts.
	Positions PositionStore
	// Queue bounds the agents with alerts waiting; an agent's alerts
	// wait as one (the latest, with every signal fired since the last
	// handled), so that a flood of one agent's alerts delays no other's.
	// Past it, alerts of further agents are counted as dropped and logged.
	// Default 4096.
	Queue int
	// Leading says whether this process acts (the one leading the audit
	// log), so that replicas do not act twice.
	Leading func() bool
	// OnAction, when set, is told of each action taken (a test's probe).
	OnAction func(agent, action string)
	Logger   *slog.Logger
	Now      func() time.Time
}

// Responder acts on alerts, in order, in its own goroutine.
type Responder struct {
	cfg       Config
	agents    Agents
	incidents store.IncidentStore
	playbooks Playbooks
	lg        *slog.Logger
	now       func() time.Time
	// waiting holds each agent's alert until the run goroutine takes it;
	// wake tells it there are some.
	mu      sync.Mutex
	waiting map[string]*monitor.Alert
	wake    chan struct{}
	dropped atomic.Int64
	// Of the run goroutine: the index of the last alert handled, whether
	// this process led when it last looked, the position as stored, and
	// when it was last saved.
	position int64
	leading  bool
	loadedAt time.Time
	savedPos []byte
	pending  []monitor.Alert // kept while another process leads
	savedAt  time.Time
	stop     context.CancelFunc
	wg       sync.WaitGroup
}

// New makes a responder and starts it; Close stops it.
func New(cfg Config, agents Agents, incidents store.IncidentStore, playbooks Playbooks) *Responder {
	if cfg.ActWithin <= 0 {
		cfg.ActWithin = 15 * time.Minute
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 4096
	}
	if cfg.Leading == nil {
		cfg.Leading = func() bool { return true }
	}
	r := &Responder{cfg: cfg, agents: agents, incidents: incidents, playbooks: playbooks, lg: cfg.Logger, now: cfg.Now,
		waiting: map[string]*monitor.Alert{}, wake: make(chan struct{}, 1), position: -1}
	if r.lg == nil {
		r.lg = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	ctx, stop := context.WithCancel(context.Background())
	r.stop = stop
	r.wg.Add(2)
	go func() { defer r.wg.Done(); r.run(ctx) }()
	go func() { defer r.wg.Done(); r.expireLoop(ctx) }()
	return r
}

// Close stops the responder after the alert in hand.
func (r *Responder) Close() {
	r.stop()
	r.wg.Wait()
}

// Alert queues a for the responder without blocking (monitor.Options.OnFire).
// An alert of an agent whose earlier alert still waits joins it: the
// latest event and risk, and every signal fired since the last handled.
func (r *Responder) Alert(a monitor.Alert) {
	r.mu.Lock()
	w, ok := r.waiting[a.Event.Agent]
	switch {
	case ok:
		signals := w.Signals
		*w = a
		w.Signals = slices.Clone(signals)
		for _, s := range a.Signals {
			if !slices.Contains(w.Signals, s) {
				w.Signals = append(w.Signals, s)
			}
		}
	case len(r.waiting) >= r.cfg.Queue:
		r.mu.Unlock()
		n := r.dropped.Add(1)
		r.lg.Error("response: alerts of too many agents waiting; alert dropped", "agent", a.Event.Agent, "signals", a.Signals, "dropped", n)
		return
	default:
		r.waiting[a.Event.Agent] = &a
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// waitingAlerts returns the waiting alerts in the order of their events.
func (r *Responder) waitingAlerts() []monitor.Alert {
	r.mu.Lock()
	out := make([]monitor.Alert, 0, len(r.waiting))
	for _, a := range r.waiting {
		out = append(out, *a)
	}
	clear(r.waiting)
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b monitor.Alert) int { return cmp.Compare(a.Event.Index, b.Event.Index) })
	return out
}

// Dropped counts the alerts dropped because the queue was full.
func (r *Responder) Dropped() int64 { return r.dropped.Load() }

func (r *Responder) run(ctx context.Context) {
	defer r.savePosition(context.WithoutCancel(ctx), true)
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
			batch := r.waitingAlerts()
			if !r.cfg.Leading() {
				// Another process acts. Keep the latest alerts: if the lead
				// comes here before that process reached them, they are
				// still acted on.
				r.leading = false
				if r.pending = append(r.pending, batch...); len(r.pending) > maxPending {
					r.pending = r.pending[len(r.pending)-maxPending:]
				}
				continue
			}
			if !r.leading || r.now().Sub(r.loadedAt) > reloadPosition {
				// Newly leading, or leading a while (the lead may have gone
				// elsewhere and come back): start from the position the
				// leader before reached.
				r.loadPosition(ctx)
				r.loadedAt, r.leading = r.now(), true
			}
			backlog := append(r.pending, batch...)
			r.pending = nil
			for _, b := range backlog {
				r.act(ctx, b)
			}
		}
	}
}

// Alerts kept while another process leads, and how often a leader reads
// the stored position again.
const (
	maxPending     = 4096
	reloadPosition = 5 * time.Second
)

// act handles one alert unless the position says it was handled.
func (r *Responder) act(ctx context.Context, a monitor.Alert) {
	if a.Event.Index <= r.position {
		return // handled already
	}
	// A store that does not answer is tried again a few times; an alert
	// given up on is logged as an error, with what it said.
	err := r.handle(ctx, a)
	for wait := 100 * time.Millisecond; err != nil && ctx.Err() == nil && wait <= 2*time.Second; wait *= 4 {
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		err = r.handle(ctx, a)
	}
	if err != nil && ctx.Err() == nil {
		r.lg.Error("response: alert not handled", "agent", a.Event.Agent, "signals", a.Signals,
			"score", a.Risk.Score, "level", a.Risk.Level, "audit_index", a.Event.Index, "err", err)
	}
	r.position = a.Event.Index
	r.savePosition(ctx, false)
}

// loadPosition reads the stored position; without one, alerts are judged
// by their age alone.
func (r *Responder) loadPosition(ctx context.Context) {
	if r.cfg.Positions == nil {
		return
	}
	b, err := r.cfg.Positions.Meta(ctx, positionKey)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			r.lg.Warn("response: the position could not be read; judging alerts by their age", "err", err)
		}
		return
	}
	var p int64
	if _, err := fmt.Sscan(string(b), &p); err == nil && p > r.position {
		r.position, r.savedPos = p, b
	}
}

// savePosition stores the position, at most once a second unless now.
func (r *Responder) savePosition(ctx context.Context, now bool) {
	if r.cfg.Positions == nil || r.position < 0 || (!now && r.now().Sub(r.savedAt) < time.Second) {
		return
	}
	b := []byte(fmt.Sprint(r.position))
	if string(b) == string(r.savedPos) {
		return
	}
	var ok bool
	var err error
	if r.savedPos == nil {
		ok, err = r.cfg.Positions.PutMetaIfAbsent(ctx, positionKey, b)
	} else {
		ok, err = r.cfg.Positions.SwapMeta(ctx, positionKey, r.savedPos, b)
	}
	switch {
	case err != nil:
		r.lg.Warn("response: the position could not be saved", "err", err)
	case !ok: // another process saved one: take it, and try again later
		r.savedPos = nil
		r.loadPosition(ctx)
	default:
		r.savedPos, r.savedAt = b, r.now()
	}
}

// handle asks the playbook what a calls for and does what is not done yet.
func (r *Responder) handle(ctx context.Context, a monitor.Alert) error {
	now := r.now()
	if r.position < 0 && now.Sub(a.Event.Time) > r.cfg.ActWithin {
		return nil // no position to say it was handled, and old: a first start on a long log
	}
	agent, err := r.agents.Agent(ctx, a.Event.Agent)
	if errors.Is(err, store.ErrNotFound) {
		return nil // a refused credential that named no registered agent
	}
	if err != nil {
		return err
	}
	if agent.Status == store.StatusActive {
		// A person who set the agent active after this event would see
		// acting on it now undo what they did (a monitor behind the log,
		// or reading it again, meets such events).
		released, err := r.statusSetSince(ctx, agent, a.Event.Time)
		if err != nil {
			return err
		}
		if released {
			return nil
		}
	}
	open, err := r.incidents.Incidents(ctx, store.IncidentFilter{AgentID: agent.ID, Open: true, Limit: 1})
	if err != nil {
		return err
	}
	var inc *store.Incident
	if len(open) > 0 {
		inc = &open[0]
	}
	actions, note := r.playbook(ctx, agent, a, inc, now)
	if shadow := r.shadow(ctx, agent, a, inc, now, actions); shadow != "" {
		note = strings.TrimPrefix(note+"; "+shadow, "; ")
	}
	var taken []store.IncidentAction
	var failed error
	for _, act := range actions {
		if act.Action == policy.ResponseStepUp && act.Expires == 0 {
			act.Expires = DefaultStepUp
		}
		done, err := r.take(ctx, agent, act, inc, a, now)
		if err != nil {
			note = fmt.Sprintf("%s failed: %v", act.Action, err)
			r.lg.Error("response: action failed", "agent", agent.ID, "action", act.Action, "err", err)
			failed = fmt.Errorf("%s: %w", act.Action, err)
			continue
		}
		if done {
			ia := store.IncidentAction{Action: act.Action, At: store.Time(now), Reason: act.Reason}
			if act.Expires > 0 {
				ia.Expires = store.Time(now.Add(act.Expires))
			}
			taken = append(taken, ia)
			if r.cfg.OnAction != nil {
				r.cfg.OnAction(agent.ID, act.Action)
			}
		}
	}
	if inc == nil && len(taken) == 0 && failed == nil {
		return nil // nothing to do, and no episode open to note it in
	}
	if err := r.record(ctx, agent.ID, a, taken, note, now); err != nil {
		return err
	}
	// An action that failed makes the alert one to try again: what was done
	// is in force now, and is not done twice.
	return failed
}

// statusSetSince reports whether someone other than the responder set the
// agent's status after t.
func (r *Responder) statusSetSince(ctx context.Context, agent store.Agent, t time.Time) (bool, error) {
	if !agent.UpdatedAt.After(t) {
		return false, nil
	}
	events, ok := r.incidents.(store.EventStore)
	if !ok {
		return true, nil // cannot tell who changed it: leave the agent as it is
	}
	evs, err := events.Events(ctx, store.EventFilter{Target: agent.ID})
	if err != nil {
		return false, err
	}
	for _, ev := range evs {
		if ev.Action == "agent.status" && ev.Actor != Actor && ev.Time.After(t) {
			return true, nil
		}
	}
	return false, nil
}

// playbook evaluates the live bundle's playbook on the alert. A bundle
// without one asks for an alert only; a playbook that fails asks for an
// alert and, at critical risk, quarantine (the note says why).
func (r *Responder) playbook(ctx context.Context, agent store.Agent, a monitor.Alert, inc *store.Incident, now time.Time) ([]policy.ResponseAction, string) {
	// The fallback alerts from medium risk up, as the shipped playbook does.
	var fallback []policy.ResponseAction
	if levelRank(a.Risk.Level) >= levelRank(monitor.LevelMedium) {
		fallback = append(fallback, policy.ResponseAction{Action: policy.ResponseAlert})
	}
	if a.Risk.Level == monitor.LevelCritical {
		fallback = append(fallback, policy.ResponseAction{Action: policy.ResponseQuarantine, Reason: "risk critical; the playbook failed"})
	}
	live := r.playbooks.Live()
	if live == nil || live.Active == nil {
		return fallback, "no active policy: the fallback playbook ran"
	}
	actions, defined, err := live.Active.Respond(ctx, Input(agent, a, inc), now)
	switch {
	case err != nil:
		return fallback, fmt.Sprintf("the playbook of %s failed (%s): the fallback playbook ran", live.Active.Version(), policy.ReasonForError(err))
	case !defined:
		return fallback[:min(1, len(fallback))], "the active policy has no playbook (" + policy.ResponsePackage + ")"
	}
	return actions, ""
}

// shadow evaluates the shadow bundle's playbook, when there is one, on the
// same alert, and says what it would have done differently; it acts on
// nothing.
func (r *Responder) shadow(ctx context.Context, agent store.Agent, a monitor.Alert, inc *store.Incident, now time.Time, active []policy.ResponseAction) string {
	live := r.playbooks.Live()
	if live == nil || live.Shadow == nil {
		return ""
	}
	would, _, err := live.Shadow.Respond(ctx, Input(agent, a, inc), now)
	if err != nil {
		return fmt.Sprintf("the shadow playbook of %s failed (%s)", live.Shadow.Version(), policy.ReasonForError(err))
	}
	if slices.Equal(names(would), names(active)) {
		return ""
	}
	r.lg.Info("response: the shadow playbook would have done otherwise", "agent", agent.ID, "shadow", live.Shadow.Version(),
		"would", names(would), "did", names(active))
	what := "nothing"
	if len(would) > 0 {
		what = strings.Join(names(would), ", ")
	}
	return fmt.Sprintf("the shadow playbook of %s would have done: %s", live.Shadow.Version(), what)
}

func names(as []policy.ResponseAction) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.Action
	}
	return out
}

// Input is the playbook's input for an alert: the agent, its risk, the
// signals this event fired, the event, and the agent's open incident.
func Input(agent store.Agent, a monitor.Alert, inc *store.Incident) map[string]any {
	roles := make([]any, len(agent.Roles))
	for i, role := range agent.Roles {
		roles[i] = role
	}
	fired := make([]any, len(a.Signals))
	for i, s := range a.Signals {
		fired[i] = s
	}
	reasons := make([]any, len(a.Event.Reasons))
	for i, s := range a.Event.Reasons {
		reasons[i] = s
	}
	incident := map[string]any{"open": inc != nil, "actions": []any{}, "level": ""}
	if inc != nil {
		var inForce []any
		for _, act := range inc.Actions {
			if act.Ended.IsZero() {
				inForce = append(inForce, act.Action)
			}
		}
		if inForce == nil {
			inForce = []any{}
		}
		incident = map[string]any{"open": true, "id": inc.ID, "actions": inForce, "level": inc.Level}
	}
	return map[string]any{
		"agent": map[string]any{"id": agent.ID, "trust_domain": agent.TrustDomain, "roles": roles, "owner": agent.Owner,
			"status": string(agent.Status)},
		"risk":  a.Risk.Input(),
		"fired": fired,
		"event": map[string]any{"audit_index": a.Event.Index, "action": a.Event.Action, "resource": a.Event.Resource,
			"outcome": a.Event.Outcome, "reasons": reasons},
		"incident": incident,
	}
}

// take does one action unless it is in force already; done says it did.
func (r *Responder) take(ctx context.Context, agent store.Agent, act policy.ResponseAction, inc *store.Incident, a monitor.Alert, now time.Time) (bool, error) {
	reason := act.Reason
	if reason == "" {
		reason = fmt.Sprintf("risk %d (%s): %v", a.Risk.Score, a.Risk.Level, a.Signals)
	}
	switch act.Action {
	case policy.ResponseAlert:
		return inc == nil || !inForce(inc, act.Action), nil
	case policy.ResponseRevokeTokens:
		if inc != nil && inForce(inc, act.Action) {
			return false, nil
		}
		_, err := r.agents.RevokeTokens(ctx, Actor, agent.ID, reason)
		return err == nil, err
	case policy.ResponseStepUp:
		if (inc != nil && inForce(inc, act.Action)) || identity.SteppedUp(agent, now) {
			return false, nil
		}
		_, err := r.agents.StepUp(ctx, Actor, agent.ID, now.Add(act.Expires), reason)
		return err == nil, err
	}
	target := statusOf[act.Action]
	if severity(agent.Status) >= severity(target) {
		return false, nil // as strict already, or stricter
	}
	_, err := r.agents.SetStatus(ctx, Actor, agent.ID, target, reason)
	return err == nil, err
}

func inForce(inc *store.Incident, action string) bool {
	return slices.ContainsFunc(inc.Actions, func(a store.IncidentAction) bool { return a.Action == action && a.Ended.IsZero() })
}

func severity(s store.AgentStatus) int {
	return slices.Index([]store.AgentStatus{store.StatusActive, store.StatusRestricted, store.StatusQuarantined, store.StatusDisabled}, s)
}

// record adds the alert and the actions taken to the agent's incident,
// opening one (with an event in the audit log) when it has none.
func (r *Responder) record(ctx context.Context, agent string, a monitor.Alert, taken []store.IncidentAction, note string, now time.Time) error {
	update := func(inc *store.Incident, fresh bool) (store.Event, error) {
		inc.UpdatedAt = now
		if levelRank(a.Risk.Level) > levelRank(inc.Level) {
			inc.Level = a.Risk.Level
		}
		inc.Note(store.IncidentEvent{Time: store.Time(now), Kind: "signal", AuditIndex: a.Event.Index, Signals: a.Signals,
			Score: a.Risk.Score, Level: a.Risk.Level})
		for _, t := range taken {
			inc.Actions = append(inc.Actions, t)
			inc.Note(store.IncidentEvent{Time: t.At, Kind: "action", Action: t.Action, Actor: Actor, Note: t.Reason})
		}
		if note != "" {
			inc.Note(store.IncidentEvent{Time: store.Time(now), Kind: "note", Note: note})
		}
		if !fresh {
			return store.Event{}, nil
		}
		// The opening is on the record, and so in the audit log and the
		// SIEM exporters: the alert.
		detail, _ := json.Marshal(map[string]any{"incident": inc.ID, "signals": a.Signals, "score": a.Risk.Score,
			"level": a.Risk.Level, "audit_index": a.Event.Index, "actions": actionNames(taken)})
		return store.Event{Time: store.Time(now), Actor: Actor, Action: ActionIncidentOpen, Target: agent, Detail: detail}, nil
	}
	_, err := r.incidents.UpdateOpenIncident(ctx, agent, update)
	if errors.Is(err, store.ErrConflict) { // another replica opened it meanwhile
		_, err = r.incidents.UpdateOpenIncident(ctx, agent, update)
	}
	return err
}

// ActionIncidentOpen is the action of the event (and audit entry) of an
// incident's opening.
const ActionIncidentOpen = audit.ActionIncidentOpen

func actionNames(as []store.IncidentAction) []string {
	out := []string{}
	for _, a := range as {
		out = append(out, a.Action)
	}
	return out
}

func levelRank(l string) int {
	return slices.Index([]string{monitor.LevelLow, monitor.LevelMedium, monitor.LevelHigh, monitor.LevelCritical}, l)
}
