package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warden-run/warden/internal/store"
)

// ErrTestsFailed means a bundle compiled but its tests or cases did not
// pass, so it cannot be stored or activated. The report says which.
var ErrTestsFailed = errors.New("policy tests failed")

// TestsFailedError carries the report of a run that did not pass.
type TestsFailedError struct{ Report *TestReport }

func (e *TestsFailedError) Error() string {
	c := e.Report.Counts()
	msg := fmt.Sprintf("%v: %d unit tests failed, %d errored; %d of %d decision cases failed",
		ErrTestsFailed, c.Fail, c.Error, c.CasesFail, c.CasesPass+c.CasesFail)
	// Name the first few that failed, so that the message alone says where.
	var failed []string
	for _, r := range e.Report.Tests {
		if r.Status != TestPass && r.Status != TestSkip && len(failed) < 3 {
			failed = append(failed, fmt.Sprintf("%s.%s (%s)", r.Package, r.Name, r.Status))
		}
	}
	for _, cr := range e.Report.Cases {
		if !cr.Pass && len(failed) < 3 {
			failed = append(failed, fmt.Sprintf("%s: %s: %s", cr.File, cr.Name, cr.Problem))
		}
	}
	if len(failed) > 0 {
		msg += " (" + strings.Join(failed, "; ") + ")"
	}
	return msg
}

func (e *TestsFailedError) Unwrap() error { return ErrTestsFailed }

// Live is what decides right now: the active engine (nil before any
// activation, or when the active version could not be loaded: then every
// decision is a deny) and the shadow engine, if any. A Live is never
// modified; an activation replaces it.
type Live struct {
	Active *Engine
	Shadow *Engine
	State  store.PolicyState
}

// Registry keeps policy versions and serves the live ones: push (compile
// and test, then store), activate (test again, store, swap), roll back,
// shadow. Every change is recorded with its actor. The live engines are
// swapped atomically, so decisions in flight finish on the version they
// started with. Changes made by other replicas arrive through the store's
// change feed.
type Registry struct {
	following sync.WaitGroup // follow, until the ctx of OpenRegistry ends
	st        registryStore
	cfg       RegistryConfig
	log       *slog.Logger
	now       func() time.Time
	live      atomic.Pointer[Live]

	mu      sync.Mutex // serialises loads and activations in this process
	engines map[string]*Engine

	// testSlots holds a token per test run going on (TestSlot).
	testSlots chan struct{}
}

type registryStore interface {
	store.PolicyStore
	store.ChangeFeed
	// RecordEvent records a refused push, which changes nothing else.
	RecordEvent(ctx context.Context, ev store.Event) error
}

// RegistryConfig configures a Registry.
type RegistryConfig struct {
	Engine EngineConfig
	// Tests bound the test runs of pushes and activations.
	Tests TestRunConfig
	// Resync is how often the live state is read again regardless of the
	// change feed. Default 30s.
	Resync time.Duration
	Logger *slog.Logger
	Now    func() time.Time
}

// OpenRegistry loads the live versions and follows changes until ctx ends.
// An active version that no longer compiles is logged and left out: every
// decision is then a deny until another is activated.
func OpenRegistry(ctx context.Context, cfg RegistryConfig, st registryStore) (*Registry, error) {
	if cfg.Resync <= 0 {
		cfg.Resync = 30 * time.Second
	}
	cfg.Tests = cfg.Tests.withDefaults()
	r := &Registry{st: st, cfg: cfg, log: orDiscard(cfg.Logger), now: orNow(cfg.Now), engines: map[string]*Engine{},
		testSlots: make(chan struct{}, cfg.Tests.Concurrency)}
	r.live.Store(&Live{})
	changes := st.Subscribe(ctx)
	if err := r.Reload(ctx); err != nil {
		return nil, err
	}
	r.following.Go(func() { r.follow(ctx, changes) })
	return r, nil
}

// Wait returns once the registry stopped following the store, after the
// context OpenRegistry was given ended.
func (r *Registry) Wait() { r.following.Wait() }

// Limits are the limits a pushed or activated bundle is held to.
func (r *Registry) Limits() Limits { return r.cfg.Engine.Limits.orDefault() }

// Live returns the live engines. Read it once per decision.
func (r *Registry) Live() *Live { return r.live.Load() }

func (r *Registry) follow(ctx context.Context, changes <-chan store.Change) {
	tick := time.NewTicker(r.cfg.Resync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-changes:
			if c.Kind != store.ChangePolicy && c.Kind != store.ChangeResync {
				continue
			}
		case <-tick.C:
		}
		if err := r.Reload(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("policy: reloading the live versions failed; the current ones stay", "err", err)
		}
	}
}

// Reload reads the live state from the store and swaps in its engines.
func (r *Registry) Reload(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.st.PolicyState(ctx)
	if err != nil {
		return err
	}
	r.swap(ctx, st)
	return nil
}

// swap makes st live. A version that cannot be loaded is left out (and
// logged): no active engine means every decision is a deny. Called with
// r.mu held.
func (r *Registry) swap(ctx context.Context, st store.PolicyState) {
	cur := r.live.Load()
	if cur.State.Active == st.Active && cur.State.Shadow == st.Shadow && cur.State.Activation.Seq == st.Activation.Seq {
		return
	}
	next := &Live{State: st}
	if st.Active != "" {
		e, err := r.engine(ctx, st.Active)
		if err != nil {
			// Fail closed: no engine, every decision a deny.
			r.log.Error("policy: the active version cannot be loaded; every decision is a deny until another is activated", "version", st.Active, "err", err)
		}
		next.Active = e
	}
	if st.Shadow != "" {
		e, err := r.engine(ctx, st.Shadow)
		if err != nil {
			r.log.Error("policy: the shadow version cannot be loaded; no shadow evaluation", "version", st.Shadow, "err", err)
		}
		next.Shadow = e
	}
	r.live.Store(next)
	if cur.State.Active != st.Active {
		r.log.Info("policy: active version", "version", st.Active)
	}
}

// engine compiles a stored version, once. Called with r.mu held.
func (r *Registry) engine(ctx context.Context, id string) (*Engine, error) {
	if e, ok := r.engines[id]; ok {
		return e, nil
	}
	v, err := r.st.PolicyVersion(ctx, id)
	if err != nil {
		return nil, err
	}
	// A stored version passed the limits when it got in; lowering them
	// later must not make the active version unloadable (every decision a
	// deny), so loading holds it to the largest limits only.
	cfg := r.cfg.Engine
	cfg.Limits = MaxLimits()
	e, err := Compile(ctx, &Bundle{Files: v.Files}, cfg)
	if err != nil {
		return nil, err
	}
	if len(r.engines) >= 16 {
		clear(r.engines) // a small cache: the live versions come back on the next load
	}
	r.engines[id] = e
	return e, nil
}

// A TestSlot is the right to run one bundle's tests: at most
// TestRunConfig.Concurrency are held at once, so that pushes and
// activations together use at most that many times a run's memory. A
// push or an activation takes one for its whole course; the HTTP API
// takes it before it reads a pushed bundle.
type TestSlot struct {
	r    *Registry
	once sync.Once
}

// TryTestSlot takes a test slot if one is free, else fails with ErrBusy.
func (r *Registry) TryTestSlot() (*TestSlot, error) {
	select {
	case r.testSlots <- struct{}{}:
		return &TestSlot{r: r}, nil
	default:
		return nil, fmt.Errorf("%w: %d at once (policy.tests.concurrency); try again shortly", ErrBusy, cap(r.testSlots))
	}
}

// TestSlot waits for a free test slot until ctx ends.
func (r *Registry) TestSlot(ctx context.Context) (*TestSlot, error) {
	select {
	case r.testSlots <- struct{}{}:
		return &TestSlot{r: r}, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting for a test run to end: %w", ErrBusy, ctx.Err())
	}
}

// Release gives the slot back. Releasing twice is harmless.
func (s *TestSlot) Release() { s.once.Do(func() { <-s.r.testSlots }) }

// Push compiles and tests b and, when everything passes, stores it as a
// version whose parent is the active one. It waits for a test slot. See
// TestSlot.Push.
func (r *Registry) Push(ctx context.Context, actor string, b *Bundle, message string) (store.PolicyVersion, *TestReport, bool, error) {
	slot, err := r.TestSlot(ctx)
	if err != nil {
		r.RecordRefusedPush(ctx, actor, PushRefusal{Message: message, Bundle: b, Err: err})
		return store.PolicyVersion{}, nil, false, err
	}
	defer slot.Release()
	return slot.Push(ctx, actor, b, message)
}

// Push compiles and tests b and, when everything passes, stores it as a
// version whose parent is the active one. Pushing content already stored
// returns the stored version and ok false. A bundle that does not compile
// is ErrInvalidBundle (a *BundleError or a *LimitError); one whose tests
// fail, a *TestsFailedError; one whose tests were stopped, a
// *TestsStoppedError. Every refusal is recorded, without the bundle's
// content (RecordRefusedPush).
func (s *TestSlot) Push(ctx context.Context, actor string, b *Bundle, message string) (v store.PolicyVersion, rep *TestReport, created bool, err error) {
	r := s.r
	defer func() {
		if err != nil {
			r.RecordRefusedPush(ctx, actor, PushRefusal{Message: message, Bundle: b, Err: err})
		}
	}()
	rep, err = r.cfg.Tests.runTests(ctx, b, TestOptions{Engine: r.cfg.Engine})
	if err != nil {
		return v, nil, false, err
	}
	if !rep.Passed {
		return v, rep, false, &TestsFailedError{Report: rep}
	}
	id := b.Digest()
	if existing, err := r.st.PolicyVersion(ctx, id); err == nil {
		existing.Files = nil
		return existing, rep, false, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return v, rep, false, err
	}
	now := store.Time(r.now())
	c := rep.Counts()
	summary, _ := json.Marshal(map[string]int{"tests_passed": c.Pass, "tests_skipped": c.Skip, "cases_passed": c.CasesPass})
	v = store.PolicyVersion{ID: id, Parent: r.Live().State.Active, Author: actor, Message: message, CreatedAt: now, Files: b.Files, Tests: summary}
	ev := event(now, actor, "policy.push", id, map[string]any{"message": message, "parent": v.Parent, "files": len(b.Files),
		"tests_passed": c.Pass, "cases_passed": c.CasesPass})
	if err := r.st.AddPolicyVersion(ctx, v, ev); err != nil {
		if errors.Is(err, store.ErrConflict) { // pushed meanwhile by someone else
			return v, rep, false, nil
		}
		return v, rep, false, err
	}
	r.log.Info("policy: version pushed", "version", id, "actor", actor)
	v.Files = nil
	return v, rep, true, nil
}

// Activate makes a stored version active; it waits for a test slot. See
// TestSlot.Activate.
func (r *Registry) Activate(ctx context.Context, actor, id string) (store.PolicyState, error) {
	slot, err := r.TestSlot(ctx)
	if err != nil {
		return store.PolicyState{}, err
	}
	defer slot.Release()
	return slot.Activate(ctx, actor, id)
}

// Activate makes a stored version active, after compiling it and running
// its tests again on this engine, within this server's limits: a version
// that does not pass now cannot go live, and the active one stays. It is
// live in this process when Activate returns, and in the others within a
// second.
func (s *TestSlot) Activate(ctx context.Context, actor, id string) (store.PolicyState, error) {
	r := s.r
	v, err := r.st.PolicyVersion(ctx, id)
	if err != nil {
		return store.PolicyState{}, err
	}
	// Tested before the lock is taken: a run can take a while, and the
	// live state must keep following the other replicas meanwhile. The
	// store refuses the activation if the active version changed.
	rep, err := r.cfg.Tests.runTests(ctx, &Bundle{Files: v.Files}, TestOptions{Engine: r.cfg.Engine})
	if err != nil {
		return store.PolicyState{}, err
	}
	if !rep.Passed {
		return store.PolicyState{}, &TestsFailedError{Report: rep}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, err := r.st.PolicyState(ctx)
	if err != nil {
		return store.PolicyState{}, err
	}
	if cur.Active == id {
		r.swapStored(ctx, cur) // already active: nothing to record
		return cur, nil
	}
	now := store.Time(r.now())
	ev := event(now, actor, "policy.activate", id, map[string]any{"previous": cur.Active})
	st, err := r.st.ActivatePolicy(ctx, id, cur.Active, now, actor, ev)
	if err != nil {
		return store.PolicyState{}, err
	}
	r.log.Info("policy: version activated", "version", id, "previous", cur.Active, "actor", actor)
	r.swapStored(ctx, st)
	return st, nil
}

// Rollback returns to the version that was active before the current
// activation, in one step. Rolling back again goes further back.
func (r *Registry) Rollback(ctx context.Context, actor string) (store.PolicyState, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, err := r.st.PolicyState(ctx)
	if err != nil {
		return store.PolicyState{}, err
	}
	if cur.Activation.Undo == 0 {
		return store.PolicyState{}, fmt.Errorf("nothing to roll back to: %w", store.ErrNotFound)
	}
	undo, err := r.st.PolicyActivation(ctx, cur.Activation.Undo)
	if err != nil {
		return store.PolicyState{}, err
	}
	target := undo.Version
	// The version rolled back to must still load, or the rollback would
	// leave nothing live.
	if _, err := r.engine(ctx, target); err != nil {
		return store.PolicyState{}, fmt.Errorf("version %s cannot be loaded: %w", target, err)
	}
	now := store.Time(r.now())
	ev := event(now, actor, "policy.rollback", target, map[string]any{"from": cur.Active})
	st, err := r.st.RollbackPolicy(ctx, cur.Active, target, now, actor, ev)
	if err != nil {
		return store.PolicyState{}, err
	}
	r.log.Info("policy: rolled back", "version", st.Active, "from", cur.Active, "actor", actor)
	r.swapStored(ctx, st)
	return st, nil
}

// SetShadow attaches a stored version as the shadow (id "" detaches it).
// The shadow must compile; it is evaluated beside the active version on
// live traffic and never enforced.
func (r *Registry) SetShadow(ctx context.Context, actor, id string) (store.PolicyState, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id != "" {
		if _, err := r.engine(ctx, id); err != nil {
			return store.PolicyState{}, err
		}
	}
	now := store.Time(r.now())
	st, err := r.st.SetShadowPolicy(ctx, id, event(now, actor, "policy.shadow", id, map[string]any{"shadow": id}))
	if err != nil {
		return store.PolicyState{}, err
	}
	r.log.Info("policy: shadow version", "version", id, "actor", actor)
	r.swapStored(ctx, st)
	return st, nil
}

// swapStored makes a state just stored live here, even if the caller has
// gone: the store has it already.
func (r *Registry) swapStored(ctx context.Context, st store.PolicyState) {
	r.swap(context.WithoutCancel(ctx), st)
}

// Version returns a stored version with its files.
func (r *Registry) Version(ctx context.Context, id string) (store.PolicyVersion, error) {
	return r.st.PolicyVersion(ctx, id)
}

// Versions lists stored versions, newest first.
func (r *Registry) Versions(ctx context.Context, before string, limit int) ([]store.PolicyVersion, error) {
	return r.st.PolicyVersions(ctx, before, limit)
}

// Activations lists the changes of the active version, newest first.
func (r *Registry) Activations(ctx context.Context, limit int) ([]store.PolicyActivation, error) {
	return r.st.PolicyActivations(ctx, limit)
}

func event(now time.Time, actor, action, target string, detail map[string]any) store.Event {
	b, _ := json.Marshal(detail)
	return store.Event{Time: now, Actor: actor, Action: action, Target: target, Detail: b}
}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

func orNow(f func() time.Time) func() time.Time {
	if f == nil {
		return time.Now
	}
	return f
}
