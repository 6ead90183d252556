// Package approvals holds actions back until enough approvers agree: a
// policy's require_approvals obligation turns a decision into a request
// bound to a digest of exactly what will run; humans and agents approve or
// reject it; the enforcement point's next identical call consumes it,
// once.
package approvals

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
)

// Errors of a vote, to be tested with errors.Is.
var (
	ErrFinal       = errors.New("the request is no longer open")
	ErrExpired     = errors.New("the request expired")
	ErrSelf        = errors.New("the requester cannot approve its own request")
	ErrSameOwner   = errors.New("the policy excludes approvers who share the requester's owner")
	ErrNotEligible = errors.New("not among the approvers the policy names")
	ErrChanged     = errors.New("an approver's vote cannot change")
)

// Actor is the actor of what Warden does itself to a request (its
// creation, consumption and expiry).
const Actor = "warden:approvals"

// Event actions, in the audit log.
const (
	ActionRequest = "approval.request"
	ActionApprove = "approval.approve"
	ActionReject  = "approval.reject"
	ActionConsume = "approval.consume"
	ActionExpire  = "approval.expire"
)

// Subject is exactly what an approval is for.
type Subject struct {
	Agent      string
	Owner      string
	Delegation []string
	// RequestedBy, when set, is who asked, if not the agent: a person
	// asking for a grant. Not part of the digest; excluded from voting.
	RequestedBy   string
	Action        string
	Resource      store.ApprovalResource
	Args          map[string]any
	Audience      string
	PolicyVersion string
}

// Digest is the SHA-256 of the RFC 8785 canonical form of what s runs:
// agent, the agents it acts through (a delegated token's chain: who runs
// it), action, resource, arguments, audience and policy version. It returns
// the canonical arguments too.
func Digest(s Subject) (string, []byte, error) {
	args := any(s.Args)
	if s.Args == nil {
		args = map[string]any{}
	}
	canonArgs, err := Canonical(nil, args)
	if err != nil {
		return "", nil, err
	}
	chain := make([]any, len(s.Delegation))
	for i, a := range s.Delegation {
		chain[i] = a
	}
	whole, err := Canonical(nil, map[string]any{"agent": s.Agent, "delegation": chain, "action": s.Action, "args": args, "audience": s.Audience,
		"policy_version": s.PolicyVersion, "resource": map[string]any{"kind": s.Resource.Kind, "id": s.Resource.ID}})
	if err != nil {
		return "", nil, err
	}
	sum := sha256.Sum256(whole)
	return "sha256:" + hex.EncodeToString(sum[:]), canonArgs, nil
}

// Service keeps approval requests.
type Service struct {
	store store.ApprovalStore
	lg    *slog.Logger
	now   func() time.Time
}

// New makes a service over st.
func New(st store.ApprovalStore, lg *slog.Logger, now func() time.Time) *Service {
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Service{store: st, lg: lg, now: now}
}

// Gated is what Gate found: the request, and whether it is approved as
// rule asks (Ready: the action may run once Consume has used it up).
type Gated struct {
	Approval store.Approval
	Ready    bool
}

// Gate is called for a decision the policy holds for approval (rule): it
// finds the live request for exactly this subject, or the standing
// rejection of one, or opens a pending request; Ready says the request is
// approved as rule asks.
func (s *Service) Gate(ctx context.Context, sub Subject, rule store.ApprovalRule, decisionID string) (Gated, error) {
	digest, args, err := Digest(sub)
	if err != nil {
		return Gated{}, err
	}
	for range 4 {
		now := s.now()
		a, err := s.store.LiveApproval(ctx, digest)
		if errors.Is(err, store.ErrNotFound) {
			// A rejection stands until the rejected request would have
			// expired: asking again does not make a new request.
			if r, err := s.rejected(ctx, digest, now); err != nil || r != nil {
				if r != nil {
					return Gated{Approval: *r}, nil
				}
				return Gated{}, err
			}
			a, err = s.open(ctx, sub, digest, args, rule, decisionID, now)
			if errors.Is(err, store.ErrConflict) {
				continue // opened meanwhile, by another decision
			}
			return Gated{Approval: a}, err
		}
		if err != nil {
			return Gated{}, err
		}
		if !now.Before(a.ExpiresAt) {
			if _, err := s.expire(ctx, a.ID); err != nil {
				return Gated{}, err
			}
			continue
		}
		ready := a.Status == store.ApprovalApproved && policy.ApprovalsMet(rule, VotesInput(a.Votes, rule))
		return Gated{Approval: a, Ready: ready}, nil
	}
	return Gated{}, errors.New("approvals: the request kept changing under this decision")
}

// Consume uses an approved request up for decision decisionID: once,
// atomically, also across replicas. ErrUsed when it was used up (or
// expired) meanwhile.
func (s *Service) Consume(ctx context.Context, id, decisionID string) (store.Approval, error) {
	now := s.now()
	a, err := s.store.UpdateApproval(ctx, id, func(x *store.Approval) (store.Event, error) {
		if x.Status != store.ApprovalApproved || !now.Before(x.ExpiresAt) {
			return store.Event{}, ErrUsed
		}
		x.Status, x.ConsumedBy, x.ConsumedAt, x.UpdatedAt = store.ApprovalConsumed, decisionID, store.Time(now), now
		return s.event(now, Actor, ActionConsume, x, map[string]any{"decision_id": decisionID}), nil
	})
	return a, err
}

// ErrUsed: the approval was used up (or expired) before this decision.
var ErrUsed = errors.New("the approval was used already")

// rejected is the latest request for digest when it was rejected and its
// time has not run out.
func (s *Service) rejected(ctx context.Context, digest string, now time.Time) (*store.Approval, error) {
	list, err := s.store.Approvals(ctx, store.ApprovalFilter{Digest: digest, Newest: true, Limit: 1})
	if err != nil || len(list) == 0 {
		return nil, err
	}
	last := &list[0]
	if last.Status == store.ApprovalRejected && now.Before(last.ExpiresAt) {
		return last, nil
	}
	return nil, nil
}

func (s *Service) open(ctx context.Context, sub Subject, digest string, args []byte, rule store.ApprovalRule, decisionID string, now time.Time) (store.Approval, error) {
	now = store.Time(now)
	a := store.Approval{ID: store.NewApprovalID(now), Digest: digest, Agent: sub.Agent, Owner: sub.Owner, Delegation: sub.Delegation, RequestedBy: sub.RequestedBy,
		Action: sub.Action, Resource: sub.Resource, Args: args, Audience: sub.Audience, PolicyVersion: sub.PolicyVersion,
		Rule: rule, Status: store.ApprovalPending, DecisionID: decisionID, CreatedAt: now, ExpiresAt: now.Add(rule.TTL), UpdatedAt: now,
		Votes: []store.ApprovalVote{}}
	ev := s.event(now, Actor, ActionRequest, &a, map[string]any{"decision_id": decisionID, "rule": rule, "expires_at": a.ExpiresAt})
	if err := s.store.CreateApproval(ctx, a, ev); err != nil {
		return store.Approval{}, err
	}
	return a, nil
}

// event is the audit event of a step of request a.
func (s *Service) event(now time.Time, actor, action string, a *store.Approval, extra map[string]any) store.Event {
	d := map[string]any{"agent": a.Agent, "action": a.Action, "resource": a.Resource, "digest": a.Digest, "status": a.Status}
	for k, v := range extra {
		d[k] = v
	}
	detail, _ := json.Marshal(d)
	return store.Event{Time: store.Time(now), Actor: actor, Action: action, Target: a.ID, Detail: detail}
}

// expire marks request id expired when it is live and past its time.
func (s *Service) expire(ctx context.Context, id string) (store.Approval, error) {
	now := s.now()
	return s.store.UpdateApproval(ctx, id, func(x *store.Approval) (store.Event, error) {
		if !x.Status.Live() || now.Before(x.ExpiresAt) {
			return store.Event{}, nil
		}
		x.Status, x.UpdatedAt = store.ApprovalExpired, now
		return s.event(now, Actor, ActionExpire, x, nil), nil
	})
}

// ExpireDue marks every live request past its time expired, each with its
// event; it returns how many it marked.
func (s *Service) ExpireDue(ctx context.Context) (int, error) {
	n, after := 0, ""
	for {
		list, err := s.store.Approvals(ctx, store.ApprovalFilter{Live: true, After: after, Limit: 500})
		if err != nil {
			return n, err
		}
		for _, a := range list {
			after = a.ID
			if s.now().Before(a.ExpiresAt) {
				continue
			}
			x, err := s.expire(ctx, a.ID)
			if err != nil {
				return n, err
			}
			if x.Status == store.ApprovalExpired {
				n++
			}
		}
		if len(list) < 500 {
			return n, nil
		}
	}
}

// Run expires due requests every interval until ctx ends.
func (s *Service) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.ExpireDue(ctx); err != nil && ctx.Err() == nil {
				s.lg.Warn("approvals: expiring requests failed; retrying", "err", err)
			}
		}
	}
}

// Voter is who approves or rejects: a signed-in human, or an agent that
// signed its vote with its own key (Proof).
type Voter struct {
	ID    string
	Email string
	Kind  string // store.ApproverHuman or store.ApproverAgent
	Roles []string
	Owner string
	Proof string
}

// Vote records v's approval (approve) or rejection of request id. The
// requester and the agents it acted through cannot vote; an approver votes
// once (again, the same way, changes nothing); a rejection by as many as
// the rule's rejections rejects the request; enough approvals approve it.
func (s *Service) Vote(ctx context.Context, id string, v Voter, approve bool, reason string) (store.Approval, error) {
	now := s.now()
	var refusal error
	a, err := s.store.UpdateApproval(ctx, id, func(x *store.Approval) (store.Event, error) {
		if !x.Status.Live() {
			return store.Event{}, fmt.Errorf("%w: %s is %s", ErrFinal, x.ID, x.Status)
		}
		if !now.Before(x.ExpiresAt) {
			// Recorded as expired; the vote itself is refused below.
			refusal = fmt.Errorf("%w at %s", ErrExpired, x.ExpiresAt.Format(time.RFC3339))
			x.Status, x.UpdatedAt = store.ApprovalExpired, now
			return s.event(now, Actor, ActionExpire, x, nil), nil
		}
		if err := eligible(x, v); err != nil {
			return store.Event{}, err
		}
		if i := slices.IndexFunc(x.Votes, func(o store.ApprovalVote) bool { return o.By == v.ID }); i >= 0 {
			if x.Votes[i].Approve != approve {
				return store.Event{}, fmt.Errorf("%w: %s voted already", ErrChanged, v.ID)
			}
			return store.Event{}, errUnchanged
		}
		x.Votes = append(x.Votes, store.ApprovalVote{By: v.ID, Email: v.Email, Kind: v.Kind, Roles: v.Roles, Approve: approve, Reason: reason, At: store.Time(now), Proof: v.Proof})
		x.UpdatedAt = now
		rejections := 0
		for _, o := range x.Votes {
			if !o.Approve {
				rejections++
			}
		}
		switch {
		case rejections >= x.Rule.Rejections:
			x.Status = store.ApprovalRejected
		case policy.ApprovalsMet(x.Rule, VotesInput(x.Votes, x.Rule)):
			x.Status = store.ApprovalApproved
		}
		action := ActionApprove
		if !approve {
			action = ActionReject
		}
		return s.event(now, v.ID, action, x, map[string]any{"reason": reason, "approver_kind": v.Kind, "votes": len(x.Votes)}), nil
	})
	if errors.Is(err, errUnchanged) {
		return s.store.Approval(ctx, id)
	}
	if err != nil {
		return a, err
	}
	return a, refusal
}

var errUnchanged = errors.New("unchanged")

// eligible says why v may not vote on x, if it may not.
func eligible(x *store.Approval, v Voter) error {
	switch {
	case v.ID == x.Agent || slices.Contains(x.Delegation, v.ID) || (x.RequestedBy != "" && v.ID == x.RequestedBy):
		return ErrSelf
	case x.Rule.ExcludeOwner && v.Owner != "" && v.Owner == x.Owner:
		return fmt.Errorf("%w (%s)", ErrSameOwner, v.Owner)
	case len(x.Rule.Approvers) > 0 && !slices.Contains(x.Rule.Approvers, v.ID):
		return fmt.Errorf("%w: %s", ErrNotEligible, v.ID)
	case len(x.Rule.Roles) > 0 && !slices.ContainsFunc(v.Roles, func(r string) bool { return slices.Contains(x.Rule.Roles, r) }):
		return fmt.Errorf("%w: the request needs one of the roles %v", ErrNotEligible, x.Rule.Roles)
	}
	return nil
}

// VotesInput is the approvals among votes as policy sees them
// (context.approvals): by, kind, roles, and role, the first of the roles
// rule names (or of the approver's roles).
func VotesInput(votes []store.ApprovalVote, rule store.ApprovalRule) []any {
	out := make([]any, 0, len(votes))
	for _, v := range votes {
		if !v.Approve {
			continue
		}
		roles := make([]any, len(v.Roles))
		role := ""
		for i, r := range v.Roles {
			roles[i] = r
			if role == "" && slices.Contains(rule.Roles, r) {
				role = r
			}
		}
		if role == "" && len(v.Roles) > 0 {
			role = v.Roles[0]
		}
		a := map[string]any{"by": v.By, "kind": v.Kind, "roles": roles, "role": role}
		if v.Email != "" {
			a["email"] = v.Email
		}
		out = append(out, a)
	}
	return out
}
