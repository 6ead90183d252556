package approvals_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/approvals"
	"github.com/warden-run/warden/internal/store"
	"github.com/warden-run/warden/internal/store/sqlite"
)

type env struct {
	st    *sqlite.Store
	s     *approvals.Service
	clock atomic.Int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "warden.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{st: st}
	e.clock.Store(time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC).UnixNano())
	e.s = approvals.New(st, nil, func() time.Time { return time.Unix(0, e.clock.Load()).UTC() })
	return e
}

func (e *env) advance(d time.Duration) { e.clock.Add(int64(d)) }

var setpoint = approvals.Subject{Agent: "ai-agent://prod/manufacturing/tuner", Owner: "team-process", Action: "tools/call",
	Resource: store.ApprovalResource{Kind: "mcp.tool", ID: "plc/set_setpoint"}, Args: map[string]any{"oven": json.Number("3"), "setpoint": json.Number("245")},
	Audience: "https://gw.example/mcp", PolicyVersion: "sha256:01"}

var twoReviewers = store.ApprovalRule{Count: 2, Roles: []string{"safety-reviewer"}, Agents: 1, Rejections: 1, TTL: time.Hour}

func reviewer(id, kind string) approvals.Voter {
	return approvals.Voter{ID: id, Kind: kind, Roles: []string{"safety-reviewer"}}
}

// Any change to what runs is another digest: another approval.
func TestDigestBindsEverything(t *testing.T) {
	base, _, err := approvals.Digest(setpoint)
	if err != nil {
		t.Fatal(err)
	}
	// The same arguments written otherwise are the same action.
	same := setpoint
	same.Args = map[string]any{"setpoint": json.Number("245.0"), "oven": json.Number("3")}
	if d, _, _ := approvals.Digest(same); d != base {
		t.Fatal("the same arguments, written otherwise, have another digest")
	}
	for name, edit := range map[string]func(*approvals.Subject){
		"agent":         func(s *approvals.Subject) { s.Agent = "ai-agent://prod/manufacturing/other" },
		"action":        func(s *approvals.Subject) { s.Action = "resources/read" },
		"resource kind": func(s *approvals.Subject) { s.Resource.Kind = "http.route" },
		"resource id":   func(s *approvals.Subject) { s.Resource.ID = "plc/set_setpoint2" },
		"argument": func(s *approvals.Subject) {
			s.Args = map[string]any{"oven": json.Number("3"), "setpoint": json.Number("246")}
		},
		"extra argument": func(s *approvals.Subject) {
			s.Args = map[string]any{"oven": json.Number("3"), "setpoint": json.Number("245"), "x": nil}
		},
		"audience":       func(s *approvals.Subject) { s.Audience = "https://other.example/mcp" },
		"policy version": func(s *approvals.Subject) { s.PolicyVersion = "sha256:02" },
	} {
		s := setpoint
		edit(&s)
		if d, _, err := approvals.Digest(s); err != nil || d == base {
			t.Errorf("%s changed, digest the same (%v)", name, err)
		}
	}
}

func TestApprovedOnceThenUsedUp(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	g, err := e.s.Gate(ctx, setpoint, twoReviewers, "dec_1")
	if err != nil || g.Ready || g.Approval.Status != store.ApprovalPending {
		t.Fatalf("first ask: %+v, %v", g, err)
	}
	id := g.Approval.ID
	if g2, _ := e.s.Gate(ctx, setpoint, twoReviewers, "dec_2"); g2.Approval.ID != id {
		t.Fatal("asking again opened a second request")
	}
	if _, err := e.s.Vote(ctx, id, reviewer(setpoint.Agent, store.ApproverAgent), true, ""); !errors.Is(err, approvals.ErrSelf) {
		t.Fatalf("self-approval: %v", err)
	}
	if _, err := e.s.Vote(ctx, id, approvals.Voter{ID: "human:idp#mallory", Kind: store.ApproverHuman, Roles: []string{"viewer"}}, true, ""); !errors.Is(err, approvals.ErrNotEligible) {
		t.Fatalf("an approver without the role: %v", err)
	}
	// Two humans are two approvals, but the rule needs an agent.
	for _, h := range []string{"human:idp#alice", "human:idp#bob", "human:idp#alice"} {
		if _, err := e.s.Vote(ctx, id, reviewer(h, store.ApproverHuman), true, "checked"); err != nil {
			t.Fatal(err)
		}
	}
	if a, _ := e.st.Approval(ctx, id); a.Status != store.ApprovalPending || len(a.Votes) != 2 {
		t.Fatalf("after two humans (one twice): %s with %d votes", a.Status, len(a.Votes))
	}
	if _, err := e.s.Vote(ctx, id, reviewer("human:idp#alice", store.ApproverHuman), false, ""); !errors.Is(err, approvals.ErrChanged) {
		t.Fatalf("a vote changed: %v", err)
	}
	a, err := e.s.Vote(ctx, id, reviewer("ai-agent://prod/manufacturing/safety", store.ApproverAgent), true, "")
	if err != nil || a.Status != store.ApprovalApproved {
		t.Fatalf("after the safety agent: %+v, %v", a, err)
	}
	// Another action is not approved by it.
	other := setpoint
	other.Args = map[string]any{"oven": json.Number("3"), "setpoint": json.Number("300")}
	if g, _ := e.s.Gate(ctx, other, twoReviewers, "dec_3"); g.Ready || g.Approval.ID == id {
		t.Fatalf("changed arguments used the approval: %+v", g)
	}
	g, err = e.s.Gate(ctx, setpoint, twoReviewers, "dec_4")
	if err != nil || !g.Ready || g.Approval.ID != id {
		t.Fatalf("the approved call: %+v, %v", g, err)
	}
	used, err := e.s.Consume(ctx, id, "dec_4")
	if err != nil || used.Status != store.ApprovalConsumed || used.ConsumedBy != "dec_4" {
		t.Fatalf("consume: %+v, %v", used, err)
	}
	if _, err := e.s.Consume(ctx, id, "dec_4b"); !errors.Is(err, approvals.ErrUsed) {
		t.Fatalf("consumed twice: %v", err)
	}
	if g, _ := e.s.Gate(ctx, setpoint, twoReviewers, "dec_5"); g.Ready || g.Approval.ID == id || g.Approval.Status != store.ApprovalPending {
		t.Fatalf("the second run: %+v", g)
	}
	if _, err := e.s.Vote(ctx, id, reviewer("human:idp#carol", store.ApproverHuman), true, ""); !errors.Is(err, approvals.ErrFinal) {
		t.Fatalf("a vote on a used approval: %v", err)
	}
}

func TestRejectionStands(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	g, _ := e.s.Gate(ctx, setpoint, twoReviewers, "dec_1")
	if _, err := e.s.Vote(ctx, g.Approval.ID, reviewer("ai-agent://prod/manufacturing/safety", store.ApproverAgent), true, ""); err != nil {
		t.Fatal(err)
	}
	a, err := e.s.Vote(ctx, g.Approval.ID, reviewer("human:idp#alice", store.ApproverHuman), false, "too hot")
	if err != nil || a.Status != store.ApprovalRejected {
		t.Fatalf("rejection: %+v, %v", a, err)
	}
	// Asked again while the rejected request's time runs: still rejected.
	if g, _ := e.s.Gate(ctx, setpoint, twoReviewers, "dec_2"); g.Approval.ID != a.ID || g.Approval.Status != store.ApprovalRejected {
		t.Fatalf("asked again: %+v", g)
	}
	e.advance(time.Hour)
	if g, _ := e.s.Gate(ctx, setpoint, twoReviewers, "dec_3"); g.Approval.ID == a.ID || g.Approval.Status != store.ApprovalPending {
		t.Fatalf("asked after the rejection's time: %+v", g)
	}
}

// Expiry fails closed: an approved request past its time is not used, a
// vote on it is refused, and the sweep records every expiry.
func TestExpiry(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rule := twoReviewers
	rule.Count, rule.Agents, rule.Roles = 1, 0, nil
	g, _ := e.s.Gate(ctx, setpoint, rule, "dec_1")
	if _, err := e.s.Vote(ctx, g.Approval.ID, reviewer("human:idp#alice", store.ApproverHuman), true, ""); err != nil {
		t.Fatal(err)
	}
	e.advance(time.Hour)
	g2, err := e.s.Gate(ctx, setpoint, rule, "dec_2")
	if err != nil || g2.Ready || g2.Approval.ID == g.Approval.ID {
		t.Fatalf("an expired approval: %+v, %v", g2, err)
	}
	if a, _ := e.st.Approval(ctx, g.Approval.ID); a.Status != store.ApprovalExpired {
		t.Fatalf("the old request is %s", a.Status)
	}
	e.advance(time.Hour)
	if _, err := e.s.Vote(ctx, g2.Approval.ID, reviewer("human:idp#alice", store.ApproverHuman), true, ""); !errors.Is(err, approvals.ErrExpired) {
		t.Fatalf("a vote after expiry: %v", err)
	}
	g3, _ := e.s.Gate(ctx, other(), rule, "dec_3")
	e.advance(2 * time.Hour)
	if n, err := e.s.ExpireDue(ctx); err != nil || n != 1 {
		t.Fatalf("sweep: %d, %v", n, err)
	}
	if a, _ := e.st.Approval(ctx, g3.Approval.ID); a.Status != store.ApprovalExpired {
		t.Fatalf("swept request is %s", a.Status)
	}
	evs, _ := e.st.Events(ctx, store.EventFilter{})
	n := 0
	for _, ev := range evs {
		if ev.Action == approvals.ActionExpire {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("%d expiry events, want 3", n)
	}
}

func other() approvals.Subject {
	s := setpoint
	s.Args = map[string]any{"oven": json.Number("4")}
	return s
}

// Arguments whose numbers have no exact canonical form are refused.
func TestInexactArgumentsRefused(t *testing.T) {
	e := newEnv(t)
	s := setpoint
	s.Args = map[string]any{"amount": json.Number("9007199254740993")}
	if _, err := e.s.Gate(context.Background(), s, twoReviewers, "dec_1"); !errors.Is(err, approvals.ErrInexactNumber) {
		t.Fatalf("inexact number: %v", err)
	}
}
