package storetest

import (
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/store"
)

func newApproval(digest string) store.Approval {
	return store.Approval{ID: store.NewApprovalID(t0), Digest: digest, Agent: "ai-agent://prod/manufacturing/tuner", Owner: "team-ops",
		Action: "tools/call", Resource: store.ApprovalResource{Kind: "mcp.tool", ID: "plc/set_setpoint"},
		Args: json.RawMessage(`{"oven":3,"setpoint":245}`), Audience: "https://gw.example/mcp", PolicyVersion: "sha256:ab",
		Rule:   store.ApprovalRule{Count: 2, Roles: []string{"safety-reviewer"}, Rejections: 1, TTL: time.Hour},
		Status: store.ApprovalPending, DecisionID: "dec_1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), UpdatedAt: t0, Votes: []store.ApprovalVote{}}
}

func testApprovals(t *testing.T, s store.Store) {
	c := ctx(t)
	a := newApproval("sha256:01")
	events := countEvents(t, s)
	if err := s.CreateApproval(c, a, event("approval.request", a.ID)); err != nil {
		t.Fatal(err)
	}
	if countEvents(t, s) != events+1 {
		t.Fatal("the request's event was not stored")
	}
	got, err := s.LiveApproval(c, a.Digest)
	if err != nil || got.ID != a.ID || string(got.Args) != string(a.Args) || got.Rule.TTL != time.Hour || !got.ExpiresAt.Equal(a.ExpiresAt) {
		t.Fatalf("live approval: %+v, %v", got, err)
	}
	// One live request per digest.
	dup := newApproval(a.Digest)
	dup.ID = store.NewApprovalID(t0.Add(time.Second))
	if err := s.CreateApproval(c, dup, event("approval.request", dup.ID)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a second live request for one digest: %v", err)
	}
	if countEvents(t, s) != events+1 {
		t.Fatal("a refused request left its event")
	}
	// An error from fn changes nothing.
	if _, err := s.UpdateApproval(c, a.ID, func(x *store.Approval) (store.Event, error) {
		x.Status = store.ApprovalApproved
		return store.Event{}, errors.New("no")
	}); err == nil {
		t.Fatal("an update whose fn failed succeeded")
	}
	// What it is for cannot change.
	if _, err := s.UpdateApproval(c, a.ID, func(x *store.Approval) (store.Event, error) {
		x.Digest = "sha256:02"
		return store.Event{}, nil
	}); err == nil {
		t.Fatal("the digest was changed")
	}
	vote := store.ApprovalVote{By: "human:https://idp.example#alice", Kind: store.ApproverHuman, Roles: []string{"safety-reviewer"}, Approve: true, At: t0}
	up, err := s.UpdateApproval(c, a.ID, func(x *store.Approval) (store.Event, error) {
		x.Votes = append(x.Votes, vote)
		x.Status = store.ApprovalApproved
		return event("approval.approve", x.ID), nil
	})
	if err != nil || up.Status != store.ApprovalApproved || len(up.Votes) != 1 || countEvents(t, s) != events+2 {
		t.Fatalf("approve: %+v, %v", up, err)
	}
	if got, _ := s.Approval(c, a.ID); got.Status != store.ApprovalApproved || len(got.Votes) != 1 || got.Votes[0].By != vote.By {
		t.Fatalf("read back: %+v", got)
	}
	// Consumed, it is final, and a new request for the digest may start.
	if _, err := s.UpdateApproval(c, a.ID, func(x *store.Approval) (store.Event, error) {
		x.Status, x.ConsumedBy, x.ConsumedAt = store.ApprovalConsumed, "dec_2", t0
		return event("approval.consume", x.ID), nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateApproval(c, a.ID, func(x *store.Approval) (store.Event, error) {
		x.Status = store.ApprovalApproved
		return store.Event{}, nil
	}); err == nil {
		t.Fatal("a consumed approval was made approved again")
	}
	if _, err := s.LiveApproval(c, a.Digest); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a consumed approval is live: %v", err)
	}
	if err := s.CreateApproval(c, dup, event("approval.request", dup.ID)); err != nil {
		t.Fatalf("a new request after consumption: %v", err)
	}
	if _, err := s.Approval(c, "apr_none"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown approval: %v", err)
	}
	if _, err := s.UpdateApproval(c, "apr_none", func(*store.Approval) (store.Event, error) { return store.Event{}, nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("updating an unknown approval: %v", err)
	}
	other := newApproval("sha256:03")
	other.ID, other.Agent = store.NewApprovalID(t0.Add(2*time.Second)), "ai-agent://prod/finance/trader"
	if err := s.CreateApproval(c, other, store.Event{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		f    store.ApprovalFilter
		want []string
	}{
		{store.ApprovalFilter{}, []string{a.ID, dup.ID, other.ID}},
		{store.ApprovalFilter{Live: true}, []string{dup.ID, other.ID}},
		{store.ApprovalFilter{Status: store.ApprovalConsumed}, []string{a.ID}},
		{store.ApprovalFilter{Agent: other.Agent}, []string{other.ID}},
		{store.ApprovalFilter{After: a.ID, Limit: 1}, []string{dup.ID}},
		{store.ApprovalFilter{Digest: a.Digest}, []string{a.ID, dup.ID}},
		{store.ApprovalFilter{Digest: a.Digest, Newest: true, Limit: 1}, []string{dup.ID}},
	} {
		list, err := s.Approvals(c, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, x := range list {
			ids = append(ids, x.ID)
		}
		if len(ids) != len(tc.want) || (len(ids) > 0 && ids[0] != tc.want[0]) || (len(ids) > 1 && ids[len(ids)-1] != tc.want[len(tc.want)-1]) {
			t.Errorf("approvals %+v: %v, want %v", tc.f, ids, tc.want)
		}
	}
}

// An approved request is consumed by exactly one of many concurrent
// attempts.
func testApprovalsConsumedOnce(t *testing.T, s store.Store) {
	c := ctx(t)
	a := newApproval("sha256:race")
	a.Status = store.ApprovalApproved
	if err := s.CreateApproval(c, a, store.Event{}); err != nil {
		t.Fatal(err)
	}
	var won atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.UpdateApproval(c, a.ID, func(x *store.Approval) (store.Event, error) {
				if x.Status != store.ApprovalApproved {
					return store.Event{}, store.ErrReplay
				}
				x.Status = store.ApprovalConsumed
				return store.Event{}, nil
			})
			switch {
			case err == nil:
				won.Add(1)
			case !errors.Is(err, store.ErrReplay):
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d attempts consumed the approval, want 1", won.Load())
	}
}
