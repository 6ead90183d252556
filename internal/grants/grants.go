// Package grants gives agents just-in-time, task-scoped permissions: an
// agent (signing with its own key) or a person asks for the actions on the
// resources one task needs; the live policy (data.warden.grants) gives it
// at once, sends it for approvals, or refuses it; every decision of the
// agent in that task then sees it in context.grants until it expires, is
// revoked, or the task completes.
package grants

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/warden-run/warden/internal/approvals"
	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
)

// Actor is the actor of what Warden does to grants itself (expiry).
const Actor = "warden:grants"

// ApprovalKind is the resource kind of the approval request of a grant.
const ApprovalKind = "warden.grant"

// Errors of a request.
var (
	ErrInvalid = errors.New("invalid grant request")
	ErrRefused = errors.New("grant refused by policy")
	ErrFinal   = errors.New("the grant has ended")
)

// Limits of a request.
const (
	maxItems   = 32
	maxPattern = 1024
)

// Request asks for a grant.
type Request struct {
	Agent       string         `json:"agent"`
	Task        string         `json:"task,omitempty"`
	Actions     []string       `json:"actions"`
	Resources   []string       `json:"resources"`
	Constraints map[string]any `json:"constraints,omitempty"`
	// Lifetime is how long the grant lasts once given ("30m").
	Lifetime string `json:"lifetime"`
	Reason   string `json:"reason,omitempty"`
}

// Requester is who asks: the agent itself, or a person.
type Requester struct {
	ID    string
	Kind  string // store.ApproverHuman or store.ApproverAgent
	Roles []string
}

// Agents answers agents' records (identity.TrustView).
type Agents interface {
	Agent(id string) (store.Agent, bool)
}

// Store is what grants keep: the grants, the approvals of those that
// need them, and the record of refusals.
type Store interface {
	store.GrantStore
	Approval(ctx context.Context, id string) (store.Approval, error)
	RecordEvent(ctx context.Context, ev store.Event) error
}

// Config configures a Service.
type Config struct {
	// MaxLifetime bounds every grant. Default 1h.
	MaxLifetime time.Duration
	Logger      *slog.Logger
	Now         func() time.Time
}

// Service keeps grants, and the active ones in memory for decisions.
type Service struct {
	cfg       Config
	st        Store
	approvals *approvals.Service
	policies  *policy.Registry
	agents    Agents
	lg        *slog.Logger
	now       func() time.Time

	mu      sync.RWMutex
	byAgent map[string][]store.Grant // active grants
}

// New makes a service; Run keeps its index of active grants.
func New(cfg Config, st Store, ap *approvals.Service, policies *policy.Registry, agents Agents) *Service {
	if cfg.MaxLifetime <= 0 {
		cfg.MaxLifetime = time.Hour
	}
	s := &Service{cfg: cfg, st: st, approvals: ap, policies: policies, agents: agents, lg: cfg.Logger, now: cfg.Now, byAgent: map[string][]store.Grant{}}
	if s.lg == nil {
		s.lg = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// check says what is wrong with r, and returns its lifetime.
func (s *Service) check(r *Request) (time.Duration, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	if _, err := identity.ParseAgentID(r.Agent); err != nil {
		return 0, bad("agent: %v", err)
	}
	if r.Task != "" && !identity.ValidTask(r.Task) {
		return 0, bad("task %q: 1 to 128 of A-Z a-z 0-9 . _ : -", r.Task)
	}
	if len(r.Actions) == 0 || len(r.Actions) > maxItems || len(r.Resources) == 0 || len(r.Resources) > maxItems {
		return 0, bad("actions and resources: 1 to %d each", maxItems)
	}
	for _, a := range r.Actions {
		if a == "" || len(a) > 256 || strings.Contains(a, "*") {
			return 0, bad("action %q: a name, without wildcards", a)
		}
	}
	for _, p := range r.Resources {
		if p == "" || p == "*" || len(p) > maxPattern || strings.Contains(strings.TrimSuffix(p, "*"), "*") {
			return 0, bad("resource %q: an id, or a prefix ending in * (not * alone)", p)
		}
	}
	if len(r.Constraints) > maxItems {
		return 0, bad("constraints: at most %d", maxItems)
	}
	if _, err := approvals.Canonical(nil, anyMap(r.Constraints)); err != nil {
		return 0, bad("constraints: %v", err)
	}
	if len(r.Reason) > 1024 {
		return 0, bad("reason: at most 1024 bytes")
	}
	d, err := time.ParseDuration(r.Lifetime)
	if err != nil || d < time.Minute || d > s.cfg.MaxLifetime {
		return 0, bad("lifetime %q: 1m to %s", r.Lifetime, s.cfg.MaxLifetime)
	}
	return d, nil
}

func anyMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// Ask decides a request: given at once, pending approvals, or refused
// (ErrRefused, with the policy's reasons), each on the record.
func (s *Service) Ask(ctx context.Context, r Request, by Requester) (store.Grant, error) {
	life, err := s.check(&r)
	if err != nil {
		return store.Grant{}, err
	}
	if by.Kind == store.ApproverAgent && by.ID != r.Agent {
		return store.Grant{}, fmt.Errorf("%w: an agent asks for grants for itself only", ErrInvalid)
	}
	agent, ok := s.agents.Agent(r.Agent)
	if !ok {
		return store.Grant{}, fmt.Errorf("%w: agent %s is not registered", ErrInvalid, r.Agent)
	}
	live := s.policies.Live()
	if live.Active == nil {
		return store.Grant{}, fmt.Errorf("%w: no active policy", ErrRefused)
	}
	now := store.Time(s.now())
	input := map[string]any{
		"requester": map[string]any{"id": by.ID, "kind": by.Kind, "roles": strings2any(by.Roles)},
		"agent": map[string]any{"id": agent.ID, "roles": strings2any(agent.Roles), "owner": agent.Owner, "status": string(agent.Status),
			"attributes": attrs(agent.Attributes)},
		"grant": map[string]any{"task": r.Task, "actions": strings2any(r.Actions), "resources": strings2any(r.Resources),
			"constraints": anyMap(r.Constraints), "lifetime_seconds": int64(life / time.Second), "reason": r.Reason},
		"context": map[string]any{"time": now.Format(time.RFC3339)},
	}
	d, err := live.Active.DecideGrant(ctx, input, now.Truncate(time.Second))
	if err != nil {
		return store.Grant{}, fmt.Errorf("%w: the policy could not decide: %v", ErrRefused, err)
	}
	if d.MaxLifetime > 0 && d.MaxLifetime < life {
		life = d.MaxLifetime
	}
	g := store.Grant{ID: store.NewGrantID(now), Agent: r.Agent, Task: r.Task, Actions: r.Actions, Resources: r.Resources,
		Constraints: r.Constraints, Reason: r.Reason, RequestedBy: by.ID, Lifetime: store.Duration(life), CreatedAt: now}
	detail := func(extra map[string]any) json.RawMessage {
		m := map[string]any{"agent": g.Agent, "task": g.Task, "actions": g.Actions, "resources": g.Resources, "constraints": g.Constraints,
			"lifetime": life.String(), "policy_version": live.Active.Version(), "reasons": d.Reasons}
		for k, v := range extra {
			m[k] = v
		}
		b, _ := json.Marshal(m)
		return b
	}
	switch d.Outcome {
	case policy.GrantGiven:
		g.Status, g.ExpiresAt = store.GrantActive, now.Add(life)
		err = s.st.CreateGrant(ctx, g, store.Event{Time: now, Actor: by.ID, Action: "grant.give", Target: g.ID, Detail: detail(map[string]any{"expires_at": g.ExpiresAt})})
	case policy.GrantApproval:
		g.Status = store.GrantPending
		a, gerr := s.approvals.Gate(ctx, s.subject(g, live.Active.Version()), *d.Approval, g.ID)
		if gerr != nil {
			return store.Grant{}, gerr
		}
		g.ApprovalID = a.Approval.ID
		err = s.st.CreateGrant(ctx, g, store.Event{Time: now, Actor: by.ID, Action: "grant.request", Target: g.ID, Detail: detail(map[string]any{"approval": g.ApprovalID})})
	default:
		if err := s.st.RecordEvent(ctx, store.Event{Time: now, Actor: by.ID, Action: "grant.refuse", Target: g.ID, Detail: detail(nil)}); err != nil {
			return store.Grant{}, err
		}
		return store.Grant{}, fmt.Errorf("%w: %s", ErrRefused, strings.Join(d.Reasons, ", "))
	}
	if err != nil {
		return store.Grant{}, err
	}
	s.reload(ctx, g.Agent)
	return g, nil
}

// subject is what the approval of a grant is for: the grant, exactly.
func (s *Service) subject(g store.Grant, version string) approvals.Subject {
	return approvals.Subject{Agent: g.Agent, RequestedBy: g.RequestedBy, Action: "grant", Resource: store.ApprovalResource{Kind: ApprovalKind, ID: g.ID},
		Args: map[string]any{"task": g.Task, "actions": strings2any(g.Actions), "resources": strings2any(g.Resources),
			"constraints": anyMap(g.Constraints), "lifetime": time.Duration(g.Lifetime).String()},
		Audience: "warden", PolicyVersion: version}
}

// Approved is told of an approval request that changed: a pending grant
// whose request is approved becomes active (its lifetime runs from now),
// and uses the approval up; one whose request was rejected or expired is
// rejected.
func (s *Service) Approved(ctx context.Context, a store.Approval) error {
	if a.Resource.Kind != ApprovalKind {
		return nil
	}
	g, err := s.st.Grant(ctx, a.Resource.ID)
	if err != nil || g.Status != store.GrantPending || g.ApprovalID != a.ID {
		return err
	}
	switch a.Status {
	case store.ApprovalApproved:
		found, err := s.approvals.Gate(ctx, s.subject(g, a.PolicyVersion), a.Rule, g.ID)
		if err != nil {
			return err
		}
		if !found.Ready || found.Approval.ID != a.ID {
			return nil // not yet enough
		}
		if _, err := s.approvals.Consume(ctx, a.ID, g.ID); err != nil {
			if errors.Is(err, approvals.ErrUsed) {
				return nil // given by another replica meanwhile
			}
			return err
		}
		now := store.Time(s.now())
		_, err = s.st.UpdateGrant(ctx, g.ID, func(x *store.Grant) (store.Event, error) {
			if x.Status != store.GrantPending {
				return store.Event{}, ErrFinal
			}
			x.Status, x.ExpiresAt = store.GrantActive, now.Add(time.Duration(x.Lifetime))
			detail, _ := json.Marshal(map[string]any{"approval": a.ID, "expires_at": x.ExpiresAt})
			return store.Event{Time: now, Actor: approvals.Actor, Action: "grant.give", Target: x.ID, Detail: detail}, nil
		})
		if err == nil {
			s.reload(ctx, g.Agent)
		}
		return err
	case store.ApprovalRejected, store.ApprovalExpired:
		return s.end(ctx, g.ID, store.GrantRejected, approvals.Actor, "its approval request was "+string(a.Status))
	}
	return nil
}

// Revoke ends a grant at once, everywhere.
func (s *Service) Revoke(ctx context.Context, id, by, reason string) (store.Grant, error) {
	if err := s.end(ctx, id, store.GrantRevoked, by, reason); err != nil {
		return store.Grant{}, err
	}
	return s.st.Grant(ctx, id)
}

// Complete ends every live grant of task (of agent, when agent is set):
// its work is done. It returns how many it ended.
func (s *Service) Complete(ctx context.Context, task, agent, by, reason string) (int, error) {
	if !identity.ValidTask(task) {
		return 0, fmt.Errorf("%w: task %q", ErrInvalid, task)
	}
	list, err := s.st.Grants(ctx, store.GrantFilter{Task: task, Agent: agent, Live: true})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, g := range list {
		err := s.end(ctx, g.ID, store.GrantCompleted, by, reason)
		switch {
		case err == nil:
			n++
		case !errors.Is(err, ErrFinal):
			return n, err
		}
	}
	return n, nil
}

var endActions = map[store.GrantStatus]string{store.GrantRevoked: "grant.revoke", store.GrantCompleted: "grant.complete",
	store.GrantExpired: "grant.expire", store.GrantRejected: "grant.reject"}

func (s *Service) end(ctx context.Context, id string, status store.GrantStatus, by, reason string) error {
	now := store.Time(s.now())
	g, err := s.st.UpdateGrant(ctx, id, func(x *store.Grant) (store.Event, error) {
		if !x.Status.Live() {
			return store.Event{}, fmt.Errorf("%w: %s is %s", ErrFinal, x.ID, x.Status)
		}
		x.Status, x.EndedAt, x.EndedBy, x.EndReason = status, now, by, reason
		detail, _ := json.Marshal(map[string]any{"agent": x.Agent, "task": x.Task, "reason": reason})
		return store.Event{Time: now, Actor: by, Action: endActions[status], Target: x.ID, Detail: detail}, nil
	})
	if err == nil {
		s.reload(ctx, g.Agent)
	}
	return err
}

// ExpireDue records the expiry of active grants past their time, and ends
// pending ones whose approval request ended without approval.
func (s *Service) ExpireDue(ctx context.Context) error {
	list, err := s.st.Grants(ctx, store.GrantFilter{Live: true})
	if err != nil {
		return err
	}
	if _, err := s.approvals.ExpireDue(ctx); err != nil {
		return err
	}
	now := s.now()
	for _, g := range list {
		switch {
		case g.Status == store.GrantActive && !now.Before(g.ExpiresAt):
			if err := s.end(ctx, g.ID, store.GrantExpired, Actor, "its lifetime ran out"); err != nil && !errors.Is(err, ErrFinal) {
				return err
			}
		case g.Status == store.GrantPending && g.ApprovalID != "":
			a, err := s.st.Approval(ctx, g.ApprovalID)
			if err != nil {
				return err
			}
			if a.Status != store.ApprovalPending {
				if err := s.Approved(ctx, a); err != nil && !errors.Is(err, ErrFinal) {
					return err
				}
			}
		}
	}
	return nil
}

// Run keeps the index of active grants: loaded now, then reloaded for an
// agent whenever the feed announces a change of its grants (from any
// replica), and whole on a resync; and records expiries every interval.
func (s *Service) Run(ctx context.Context, feed store.ChangeFeed, every time.Duration) {
	changes := feed.Subscribe(ctx)
	s.reloadAll(ctx)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case c, ok := <-changes:
			if !ok {
				return
			}
			switch c.Kind {
			case store.ChangeGrant:
				s.reload(ctx, c.Key)
			case store.ChangeResync:
				s.reloadAll(ctx)
			}
		case <-t.C:
			if err := s.ExpireDue(ctx); err != nil && ctx.Err() == nil {
				s.lg.Warn("grants: expiring failed; retrying", "err", err)
			}
		}
	}
}

// Load reads every active grant into the index.
func (s *Service) Load(ctx context.Context) error { return s.reloadAll(ctx) }

func (s *Service) reloadAll(ctx context.Context) error {
	list, err := s.st.Grants(ctx, store.GrantFilter{Status: store.GrantActive})
	if err != nil {
		// Grants only add permissions: without them, decisions see none.
		s.lg.Warn("grants: the active grants could not be read; decisions see none until they are", "err", err)
		s.mu.Lock()
		s.byAgent = map[string][]store.Grant{}
		s.mu.Unlock()
		return err
	}
	m := map[string][]store.Grant{}
	for _, g := range list {
		m[g.Agent] = append(m[g.Agent], g)
	}
	s.mu.Lock()
	s.byAgent = m
	s.mu.Unlock()
	return nil
}

func (s *Service) reload(ctx context.Context, agent string) {
	list, err := s.st.Grants(ctx, store.GrantFilter{Agent: agent, Status: store.GrantActive})
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		delete(s.byAgent, agent) // fewer permissions, never more
		s.lg.Warn("grants: an agent's grants could not be read; its decisions see none until they are", "agent", agent, "err", err)
		return
	}
	if len(list) == 0 {
		delete(s.byAgent, agent)
		return
	}
	s.byAgent[agent] = list
}

// ForDecision is the grants a decision sees (context.grants): the agent's
// grants in force, those of its task when the token is bound to one, and
// those bound to no task; each says whether it covers this request
// (matches: the action, a resource pattern, every constraint).
func (s *Service) ForDecision(agent, task, action, resource string, args map[string]any, now time.Time) []any {
	s.mu.RLock()
	list := s.byAgent[agent]
	s.mu.RUnlock()
	out := []any{}
	for _, g := range list {
		if !g.InForce(now) || (g.Task != "" && g.Task != task) {
			continue
		}
		out = append(out, map[string]any{"id": g.ID, "task": g.Task, "actions": strings2any(g.Actions), "resources": strings2any(g.Resources),
			"constraints": anyMap(g.Constraints), "expires_at": g.ExpiresAt.Format(time.RFC3339), "matches": covers(g, action, resource, args)})
	}
	return out
}

// HasTask reports whether agent holds a grant in force for task: it may
// then ask for tokens bound to that task.
func (s *Service) HasTask(agent, task string) bool {
	now := s.now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.ContainsFunc(s.byAgent[agent], func(g store.Grant) bool { return g.Task == task && g.InForce(now) })
}

// covers reports whether g covers the action on resource with args.
func covers(g store.Grant, action, resource string, args map[string]any) bool {
	if !slices.Contains(g.Actions, action) {
		return false
	}
	if !slices.ContainsFunc(g.Resources, func(p string) bool {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			return strings.HasPrefix(resource, prefix)
		}
		return p == resource
	}) {
		return false
	}
	for k, want := range g.Constraints {
		got, ok := args[k]
		if !ok {
			return false
		}
		a, err1 := approvals.Canonical(nil, got)
		b, err2 := approvals.Canonical(nil, want)
		if err1 != nil || err2 != nil || string(a) != string(b) {
			return false
		}
	}
	return true
}

func strings2any(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func attrs(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
