package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/store"
)

func testGrants(t *testing.T, s store.Store) {
	c := ctx(t)
	feed := s.Subscribe(c)
	g := store.Grant{ID: store.NewGrantID(t0), Agent: "ai-agent://prod/healthcare/radiology", Task: "study-1.2.840.1",
		Actions: []string{"tools/call"}, Resources: []string{"pacs/read_study"}, Constraints: map[string]any{"patient_id": "P-1"},
		RequestedBy: "ai-agent://prod/healthcare/radiology", Status: store.GrantActive, Lifetime: store.Duration(time.Hour),
		CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	events := countEvents(t, s)
	if err := s.CreateGrant(c, g, event("grant.give", g.ID)); err != nil {
		t.Fatal(err)
	}
	if countEvents(t, s) != events+1 {
		t.Fatal("the grant's event was not stored")
	}
	select {
	case ch := <-feed:
		if ch.Kind != store.ChangeGrant || ch.Key != g.Agent {
			t.Fatalf("announced %+v", ch)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the grant was not announced")
	}
	got, err := s.Grant(c, g.ID)
	if err != nil || got.Constraints["patient_id"] != "P-1" || time.Duration(got.Lifetime) != time.Hour || !got.InForce(t0) || got.InForce(t0.Add(time.Hour)) {
		t.Fatalf("grant: %+v, %v", got, err)
	}
	if _, err := s.UpdateGrant(c, g.ID, func(x *store.Grant) (store.Event, error) {
		x.Task = "study-2"
		return store.Event{}, nil
	}); err == nil {
		t.Fatal("a grant's task was changed")
	}
	done, err := s.UpdateGrant(c, g.ID, func(x *store.Grant) (store.Event, error) {
		x.Status, x.EndedAt, x.EndedBy = store.GrantCompleted, t0, "ai-agent://prod/healthcare/radiology"
		return event("grant.complete", x.ID), nil
	})
	if err != nil || done.Status != store.GrantCompleted {
		t.Fatalf("complete: %+v %v", done, err)
	}
	if _, err := s.UpdateGrant(c, g.ID, func(x *store.Grant) (store.Event, error) {
		x.Status = store.GrantActive
		return store.Event{}, nil
	}); err == nil {
		t.Fatal("a completed grant was made active again")
	}
	if _, err := s.Grant(c, "grt_none"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown grant: %v", err)
	}
	other := g
	other.ID, other.Task, other.Status = store.NewGrantID(t0.Add(time.Second)), "study-2", store.GrantPending
	if err := s.CreateGrant(c, other, store.Event{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		f    store.GrantFilter
		want int
	}{
		{store.GrantFilter{}, 2}, {store.GrantFilter{Live: true}, 1}, {store.GrantFilter{Task: "study-2"}, 1},
		{store.GrantFilter{Status: store.GrantCompleted}, 1}, {store.GrantFilter{Agent: g.Agent, Limit: 1}, 1}, {store.GrantFilter{After: g.ID}, 1},
	} {
		if list, err := s.Grants(c, tc.f); err != nil || len(list) != tc.want {
			t.Errorf("grants %+v: %d, %v; want %d", tc.f, len(list), err, tc.want)
		}
	}
}
