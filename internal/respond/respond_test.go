package respond_test

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/monitor"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/respond"
	"github.com/warden-run/warden/internal/store"
)

const agent = "ai-agent://dev/ops/worker"

const playbook = `package warden.response

actions contains {"action": "alert"} if input.risk.level != "low"
actions contains {"action": "restrict", "expires": "1h"} if input.risk.level == "high"
actions contains {"action": "quarantine"} if input.risk.level == "critical"
`

type env struct {
	w     *apptest.Instance
	r     *respond.Responder
	clock atomic.Int64
	index atomic.Int64 // of the alerts' entries
	taken chan string
}

func newEnv(t *testing.T, rego string) *env {
	t.Helper()
	e := &env{taken: make(chan string, 16)}
	e.index.Store(100)
	e.clock.Store(time.Now().UnixNano())
	e.w = apptest.Start(t, func(c *config.Config) { c.Monitor.Disabled = true })
	files := map[string][]byte{"policy.rego": []byte("package warden.authz\n\ndefault allow := false\n")}
	if rego != "" {
		files["response.rego"] = []byte(rego)
	}
	ctx := context.Background()
	v, _, _, err := e.w.App.Policies.Push(ctx, "admin:test", &policy.Bundle{Files: files}, "playbook")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.w.App.Policies.Activate(ctx, "admin:test", v.ID); err != nil {
		t.Fatal(err)
	}
	e.w.Register(t, agent, "worker")
	e.clock.Store(time.Now().UnixNano())
	e.r = respond.New(respond.Config{Now: e.now, OnAction: func(_, action string) { e.taken <- action }},
		e.w.App.Registry, e.w.App.Store, e.w.App.Policies)
	t.Cleanup(e.r.Close)
	return e
}

func (e *env) now() time.Time { return time.Unix(0, e.clock.Load()) }

// alert hands the responder an alert at level and waits until it is
// recorded in the agent's incident.
func (e *env) alert(t *testing.T, level string, age time.Duration) store.Incident {
	t.Helper()
	before := e.timelineLen(t)
	e.r.Alert(monitor.Alert{Event: monitor.Event{Index: e.index.Add(1), Time: e.now().Add(-age), Kind: monitor.EventDecision, Agent: agent,
		Action: "tools/call", Outcome: "deny"}, Signals: []string{monitor.SignalDenyBurst},
		Risk: monitor.Risk{Score: map[string]int{"medium": 30, "high": 60, "critical": 90}[level], Level: level, Signals: []string{monitor.SignalDenyBurst}}})
	if age > 0 {
		return store.Incident{}
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.timelineLen(t) == before {
		if time.Now().After(deadline) {
			t.Fatal("the alert was not recorded")
		}
		time.Sleep(2 * time.Millisecond)
	}
	incs, _ := e.w.App.Store.Incidents(context.Background(), store.IncidentFilter{AgentID: agent, Open: true})
	return incs[0]
}

func (e *env) timelineLen(t *testing.T) int {
	incs, err := e.w.App.Store.Incidents(context.Background(), store.IncidentFilter{AgentID: agent})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, inc := range incs {
		n += len(inc.Timeline)
	}
	return n
}

func (e *env) status(t *testing.T) store.AgentStatus {
	t.Helper()
	a, err := e.w.App.Registry.Agent(context.Background(), agent)
	if err != nil {
		t.Fatal(err)
	}
	return a.Status
}

func actions(inc store.Incident) []string {
	var out []string
	for _, a := range inc.Actions {
		out = append(out, a.Action)
	}
	return out
}

func TestGraduatedResponseInOneIncident(t *testing.T) {
	t.Parallel()
	e := newEnv(t, playbook)
	inc := e.alert(t, "medium", 0)
	if e.status(t) != store.StatusActive || !slices.Equal(actions(inc), []string{"alert"}) {
		t.Fatalf("medium: %s, %v", e.status(t), actions(inc))
	}
	inc2 := e.alert(t, "high", 0)
	if inc2.ID != inc.ID {
		t.Fatalf("a second incident %s for the same episode", inc2.ID)
	}
	if e.status(t) != store.StatusRestricted || !slices.Equal(actions(inc2), []string{"alert", "restrict"}) {
		t.Fatalf("high: %s, %v", e.status(t), actions(inc2))
	}
	if exp := inc2.Actions[1].Expires; exp.IsZero() || exp.Sub(e.now()) > time.Hour+time.Second {
		t.Fatalf("restrict expires %v", exp)
	}
	inc3 := e.alert(t, "critical", 0)
	if e.status(t) != store.StatusQuarantined || !slices.Equal(actions(inc3), []string{"alert", "restrict", "quarantine"}) {
		t.Fatalf("critical: %s, %v", e.status(t), actions(inc3))
	}
	if inc3.Level != "critical" {
		t.Fatalf("the incident's level is %s", inc3.Level)
	}
	// High again: the responder never lowers a quarantine to a restriction.
	e.alert(t, "high", 0)
	if e.status(t) != store.StatusQuarantined {
		t.Fatalf("high after critical: %s", e.status(t))
	}
	// The restriction's hour passes: it is marked ended (the quarantine
	// superseded it), and the agent stays quarantined until a person
	// releases it.
	e.clock.Add(int64(2 * time.Hour))
	if err := e.r.Expire(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.status(t) != store.StatusQuarantined {
		t.Fatalf("after the restriction expired: %s", e.status(t))
	}
}

func TestRestrictionExpires(t *testing.T) {
	t.Parallel()
	e := newEnv(t, playbook)
	e.alert(t, "high", 0)
	if e.status(t) != store.StatusRestricted {
		t.Fatalf("high: %s", e.status(t))
	}
	if err := e.r.Expire(context.Background()); err != nil || e.status(t) != store.StatusRestricted {
		t.Fatalf("before its time: %s, %v", e.status(t), err)
	}
	e.clock.Add(int64(time.Hour + time.Second))
	if err := e.r.Expire(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.status(t) != store.StatusActive {
		t.Fatalf("after its time: %s", e.status(t))
	}
	incs, _ := e.w.App.Store.Incidents(context.Background(), store.IncidentFilter{AgentID: agent})
	if a := incs[0].Actions[1]; a.Action != "restrict" || a.Ended.IsZero() {
		t.Fatalf("the restriction is not marked ended: %+v", a)
	}
}

// A person who releases the agent early ends the response: the expiry does
// not touch the agent's status afterwards.
func TestPersonsReleaseEndsTheResponse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, playbook)
	e.alert(t, "high", 0)
	if _, err := e.w.App.Registry.SetStatus(context.Background(), "admin:test", agent, store.StatusActive, "checked"); err != nil {
		t.Fatal(err)
	}
	if err := e.r.Expire(context.Background()); err != nil {
		t.Fatal(err)
	}
	incs, _ := e.w.App.Store.Incidents(context.Background(), store.IncidentFilter{AgentID: agent})
	if a := incs[0].Actions[1]; a.Ended.IsZero() {
		t.Fatalf("the released restriction is not marked ended: %+v", a)
	}
	if _, err := e.w.App.Registry.SetStatus(context.Background(), "admin:test", agent, store.StatusRestricted, "by hand"); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(int64(2 * time.Hour))
	if err := e.r.Expire(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.status(t) != store.StatusRestricted {
		t.Fatalf("the expiry undid a person's restriction: %s", e.status(t))
	}
}

// A playbook that fails still contains critical risk: the fallback
// quarantines, and the incident says why.
func TestFailingPlaybookFallsBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `package warden.response

actions contains {"action": "alert", "reason": sprintf("%d", [to_number(input.risk.level)])} if true
`)
	inc := e.alert(t, "critical", 0)
	if e.status(t) != store.StatusQuarantined || !slices.Contains(actions(inc), "quarantine") {
		t.Fatalf("critical with a failing playbook: %s, %v", e.status(t), actions(inc))
	}
	if !slices.ContainsFunc(inc.Timeline, func(ev store.IncidentEvent) bool { return ev.Kind == "note" && ev.Note != "" }) {
		t.Fatalf("the incident does not say the playbook failed: %+v", inc.Timeline)
	}
}

// Signals that leave the risk low open no incident: no alert storms of
// nothing.
func TestLowRiskOpensNoIncident(t *testing.T) {
	t.Parallel()
	e := newEnv(t, playbook)
	e.r.Alert(monitor.Alert{Event: monitor.Event{Index: 3, Time: e.now(), Kind: monitor.EventDecision, Agent: agent},
		Signals: []string{monitor.SignalNewArgKey}, Risk: monitor.Risk{Score: 4, Level: "low", Signals: []string{monitor.SignalNewArgKey}}})
	e.alert(t, "medium", 0) // in order after the low one
	incs, err := e.w.App.Store.Incidents(context.Background(), store.IncidentFilter{AgentID: agent})
	if err != nil || len(incs) != 1 || len(incs[0].Timeline) != 2 || incs[0].Timeline[0].Level != "medium" {
		t.Fatalf("incidents %+v, %v: want one, opened by the medium alert (its signal and its alert)", incs, err)
	}
}

// Alerts a restarted monitor reads again (older than a minute) are not
// acted on: what was done is not done twice.
func TestOldAlertsAreNotActedOn(t *testing.T) {
	t.Parallel()
	e := newEnv(t, playbook)
	e.alert(t, "critical", 20*time.Minute) // no position says whether it was handled
	e.alert(t, "medium", 0)                // after the old one, in order
	if e.status(t) != store.StatusActive {
		t.Fatalf("an old alert was acted on: %s", e.status(t))
	}
}

// The responder keeps its position in the store: after a restart it
// neither repeats an alert it handled (the monitor reads the log again) nor
// skips one it had not, however old.
func TestPositionSurvivesARestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, playbook)
	e.r.Close()
	start := func() {
		e.r = respond.New(respond.Config{Now: e.now, Positions: e.w.App.Store}, e.w.App.Registry, e.w.App.Store, e.w.App.Policies)
		t.Cleanup(e.r.Close)
	}
	start()
	handled := e.alert(t, "medium", 0)
	e.r.Close()
	start()
	// The same alert again, now critical as a changed playbook might say:
	// handled already, so nothing is done.
	e.r.Alert(monitor.Alert{Event: monitor.Event{Index: e.index.Load(), Time: e.now(), Kind: monitor.EventDecision, Agent: agent},
		Signals: []string{monitor.SignalDenyBurst}, Risk: monitor.Risk{Score: 90, Level: "critical", Signals: []string{monitor.SignalDenyBurst}}})
	// A later one, an hour old (the monitor was behind): acted on.
	e.r.Alert(monitor.Alert{Event: monitor.Event{Index: e.index.Add(1), Time: e.now().Add(-time.Hour), Kind: monitor.EventDecision, Agent: agent},
		Signals: []string{monitor.SignalDenyRatio}, Risk: monitor.Risk{Score: 60, Level: "high", Signals: []string{monitor.SignalDenyRatio}}})
	deadline := time.Now().Add(10 * time.Second)
	for e.status(t) != store.StatusRestricted {
		if time.Now().After(deadline) {
			t.Fatalf("the later alert was not acted on: %s", e.status(t))
		}
		time.Sleep(2 * time.Millisecond)
	}
	incs, _ := e.w.App.Store.Incidents(context.Background(), store.IncidentFilter{AgentID: agent})
	if len(incs) != 1 || incs[0].ID != handled.ID || slices.Contains(actions(incs[0]), "quarantine") {
		t.Fatalf("incidents %+v: want the one, without a quarantine from the repeated alert", incs)
	}
}

// A playbook in the shadow bundle acts on nothing; the incident says what
// it would have done otherwise.
func TestShadowPlaybookOnlySays(t *testing.T) {
	t.Parallel()
	e := newEnv(t, playbook)
	ctx := context.Background()
	v, _, _, err := e.w.App.Policies.Push(ctx, "admin:test", &policy.Bundle{Files: map[string][]byte{
		"policy.rego":   []byte("package warden.authz\n\ndefault allow := false\n"),
		"response.rego": []byte("package warden.response\n\nactions contains {\"action\": \"disable\"} if input.risk.level != \"low\"\n")}}, "stricter")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.w.App.Policies.SetShadow(ctx, "admin:test", v.ID); err != nil {
		t.Fatal(err)
	}
	inc := e.alert(t, "medium", 0)
	if e.status(t) != store.StatusActive {
		t.Fatalf("the shadow playbook acted: %s", e.status(t))
	}
	if !slices.ContainsFunc(inc.Timeline, func(ev store.IncidentEvent) bool {
		return ev.Kind == "note" && strings.Contains(ev.Note, "would have done: disable")
	}) {
		t.Fatalf("the incident does not say what the shadow playbook would have done: %+v", inc.Timeline)
	}
}

// A step-up puts the agent on a short leash (its record says until when)
// and ends by itself.
func TestStepUpEndsByItself(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `package warden.response

actions contains {"action": "step_up", "expires": "30m"} if input.risk.level == "medium"
`)
	inc := e.alert(t, "medium", 0)
	a, err := e.w.App.Registry.Agent(context.Background(), agent)
	if err != nil {
		t.Fatal(err)
	}
	if !identity.SteppedUp(a, e.now()) || identity.SteppedUp(a, e.now().Add(31*time.Minute)) {
		t.Fatalf("the agent's step-up: %q", a.Attributes[identity.AttrStepUpUntil])
	}
	if !slices.Equal(actions(inc), []string{"step_up"}) || inc.Actions[0].Expires.IsZero() {
		t.Fatalf("incident actions %+v", inc.Actions)
	}
	e.clock.Add(int64(31 * time.Minute))
	if err := e.r.Expire(context.Background()); err != nil {
		t.Fatal(err)
	}
	incs, _ := e.w.App.Store.Incidents(context.Background(), store.IncidentFilter{AgentID: agent})
	if incs[0].Actions[0].Ended.IsZero() {
		t.Fatalf("the step-up is not marked ended: %+v", incs[0].Actions[0])
	}
}

// Without a playbook that works, low risk still opens no incident: the
// fallback alerts from medium up, as the shipped playbook does.
func TestFallbackIsQuietAtLowRisk(t *testing.T) {
	t.Parallel()
	for name, rego := range map[string]string{"no playbook": "", "a failing playbook": `package warden.response

actions contains {"action": "alert", "reason": sprintf("%d", [to_number(input.risk.level)])} if true
`} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, rego)
			e.r.Alert(monitor.Alert{Event: monitor.Event{Index: 3, Time: e.now(), Kind: monitor.EventDecision, Agent: agent},
				Signals: []string{monitor.SignalNewArgKey}, Risk: monitor.Risk{Score: 4, Level: "low", Signals: []string{monitor.SignalNewArgKey}}})
			inc := e.alert(t, "medium", 0) // in order after the low one
			if len(inc.Timeline) == 0 || inc.Timeline[0].Level != "medium" {
				t.Fatalf("the incident began with %+v, want the medium alert", inc.Timeline)
			}
		})
	}
}

// An alert older than a person's release (a restarted monitor reads the
// log again) does not contain the agent again.
func TestReleaseIsNotUndoneByOlderAlerts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, playbook)
	ctx := context.Background()
	decided := time.Now()
	time.Sleep(10 * time.Millisecond)
	if _, err := e.w.App.Registry.SetStatus(ctx, "admin:test", agent, store.StatusActive, "checked by hand"); err != nil {
		t.Fatal(err)
	}
	e.clock.Store(time.Now().UnixNano())
	e.r.Alert(monitor.Alert{Event: monitor.Event{Index: 5, Time: decided, Kind: monitor.EventDecision, Agent: agent},
		Signals: []string{monitor.SignalDenyBurst}, Risk: monitor.Risk{Score: 90, Level: "critical", Signals: []string{monitor.SignalDenyBurst}}})
	e.alert(t, "medium", 0) // after it, in order
	if e.status(t) != store.StatusActive {
		t.Fatalf("an alert from before the release contained the agent again: %s", e.status(t))
	}
}

// A person who sets the agent's status again after a response took it
// keeps it: the response's expiry does not undo the person's decision.
func TestExpiryKeepsAPersonsLaterDecision(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `package warden.response

actions contains {"action": "quarantine", "expires": "1h"} if input.risk.level == "critical"
`)
	e.alert(t, "critical", 0)
	if e.status(t) != store.StatusQuarantined {
		t.Fatalf("critical: %s", e.status(t))
	}
	time.Sleep(10 * time.Millisecond) // the person acts after the response
	if _, err := e.w.App.Registry.SetStatus(context.Background(), "admin:test", agent, store.StatusQuarantined, "keep it so"); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(int64(2 * time.Hour))
	if err := e.r.Expire(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.status(t) != store.StatusQuarantined {
		t.Fatalf("the expiry undid a person's quarantine: %s", e.status(t))
	}
}

// flaky is the registry with its first status changes failing, as when
// the store does not answer for a moment.
type flaky struct {
	respond.Agents
	failures atomic.Int32
}

func (f *flaky) SetStatus(ctx context.Context, actor, id string, status store.AgentStatus, reason string) (store.Agent, error) {
	if f.failures.Add(-1) >= 0 {
		return store.Agent{}, context.DeadlineExceeded
	}
	return f.Agents.SetStatus(ctx, actor, id, status, reason)
}

// An action that fails is tried again: a moment without the store does not
// leave a critical agent free.
func TestFailedActionIsTriedAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, playbook)
	e.r.Close()
	agents := &flaky{Agents: e.w.App.Registry}
	agents.failures.Store(2)
	e.r = respond.New(respond.Config{Now: e.now}, agents, e.w.App.Store, e.w.App.Policies)
	t.Cleanup(e.r.Close)
	e.alert(t, "critical", 0)
	deadline := time.Now().Add(10 * time.Second)
	for e.status(t) != store.StatusQuarantined {
		if time.Now().After(deadline) {
			t.Fatalf("after the store's failures: %s", e.status(t))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Alerts that arrive while another process leads are kept: when the lead
// comes here before that process acted on them, they are acted on.
func TestAlertsWaitForTheLead(t *testing.T) {
	t.Parallel()
	e := newEnv(t, playbook)
	e.r.Close()
	var leading atomic.Bool
	asked := make(chan struct{}, 16) // the responder asked whether it leads, and heard no
	lead := func() bool {
		if leading.Load() {
			return true
		}
		asked <- struct{}{}
		return false
	}
	e.r = respond.New(respond.Config{Now: e.now, Leading: lead, Positions: e.w.App.Store}, e.w.App.Registry, e.w.App.Store, e.w.App.Policies)
	t.Cleanup(e.r.Close)
	e.r.Alert(monitor.Alert{Event: monitor.Event{Index: e.index.Add(1), Time: e.now(), Kind: monitor.EventDecision, Agent: agent},
		Signals: []string{monitor.SignalDenyBurst}, Risk: monitor.Risk{Score: 90, Level: "critical", Signals: []string{monitor.SignalDenyBurst}}})
	<-asked // the alert came while another process led
	leading.Store(true)
	e.alert(t, "medium", 0) // the next alert, here as the leader
	if e.status(t) != store.StatusQuarantined {
		t.Fatalf("the alert from before the lead was not acted on: %s", e.status(t))
	}
}

// One agent's flood of alerts (a copied token replayed at /v1/decide makes
// one every few requests) delays no other agent's: an agent's alerts wait
// as one, and the victim of the flood is still quarantined.
func TestFloodOfOneAgentDropsNoOther(t *testing.T) {
	e := newEnv(t, playbook)
	const noisy = "ai-agent://dev/ops/noisy"
	e.w.Register(t, noisy, "worker")
	for i := range 20000 {
		e.r.Alert(monitor.Alert{Event: monitor.Event{Index: e.index.Add(1), Time: e.now(), Kind: monitor.EventAuthFailure, Agent: noisy},
			Signals: []string{monitor.SignalAuthFailures}, Risk: monitor.Risk{Score: 49, Level: "medium", Signals: []string{monitor.SignalAuthFailures}}})
		if i == 10000 {
			e.r.Alert(monitor.Alert{Event: monitor.Event{Index: e.index.Add(1), Time: e.now(), Kind: monitor.EventDecision, Agent: agent,
				Action: "tools/call", Outcome: "deny"}, Signals: []string{monitor.SignalDenyBurst},
				Risk: monitor.Risk{Score: 90, Level: "critical", Signals: []string{monitor.SignalDenyBurst}}})
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.status(t) != store.StatusQuarantined {
		if time.Now().After(deadline) {
			t.Fatalf("the critical agent was not quarantined during another agent's flood (dropped %d)", e.r.Dropped())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if e.r.Dropped() != 0 {
		t.Fatalf("%d alerts dropped", e.r.Dropped())
	}
}
