package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/store"
)

func testIncidents(t *testing.T, s store.Store) {
	c := ctx(t)
	agent := "ai-agent://prod/finance/trader"
	note := func(kind string) func(*store.Incident) error {
		return func(inc *store.Incident) error {
			inc.Note(store.IncidentEvent{Time: t0, Kind: kind, AuditIndex: 7, Signals: []string{"deny_burst"}, Score: 40, Level: "medium"})
			inc.Level = "medium"
			return nil
		}
	}
	// The event of an opening names the incident.
	opening := func(kind string) func(*store.Incident, bool) (store.Event, error) {
		return func(inc *store.Incident, fresh bool) (store.Event, error) {
			var ev store.Event
			if fresh {
				ev = event("incident.open", inc.ID)
			}
			return ev, note(kind)(inc)
		}
	}
	events := countEvents(t, s)
	first, err := s.UpdateOpenIncident(c, agent, opening("signal"))
	if err != nil {
		t.Fatal(err)
	}
	if first.Status != store.IncidentOpen || first.AgentID != agent || len(first.Timeline) != 1 {
		t.Fatalf("new incident: %+v", first)
	}
	if evs, _ := s.Events(c, store.EventFilter{Target: first.ID}); countEvents(t, s) != events+1 || len(evs) != 1 {
		t.Fatalf("opening recorded %d events, %d of them for the incident; want 1", countEvents(t, s)-events, len(evs))
	}
	// The same episode: the open incident grows, no second one, no event.
	again, err := s.UpdateOpenIncident(c, agent, opening("action"))
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != first.ID || len(again.Timeline) != 2 {
		t.Fatalf("second update: %+v, want incident %s with two events", again, first.ID)
	}
	got, err := s.Incident(c, first.ID)
	if err != nil || got.ID != first.ID || len(got.Timeline) != 2 || got.Timeline[1].Kind != "action" {
		t.Fatalf("read back: %+v, %v", got, err)
	}
	// A change of id or agent, or an unknown status, is refused and changes nothing.
	for name, fn := range map[string]func(*store.Incident) error{
		"id":     func(inc *store.Incident) error { inc.ID = "inc_other"; return nil },
		"agent":  func(inc *store.Incident) error { inc.AgentID = "ai-agent://prod/other"; return nil },
		"status": func(inc *store.Incident) error { inc.Status = "closed"; return nil },
	} {
		if _, err := s.UpdateIncident(c, first.ID, store.Event{}, fn); err == nil {
			t.Fatalf("a change of %s was accepted", name)
		}
	}
	// Resolving ends the episode: the next update opens another.
	events = countEvents(t, s)
	if _, err := s.UpdateIncident(c, first.ID, event("incident.resolve", first.ID), func(inc *store.Incident) error {
		inc.Status = store.IncidentResolved
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n := countEvents(t, s); n != events+1 {
		t.Fatalf("resolving recorded %d events, want 1", n-events)
	}
	next, err := s.UpdateOpenIncident(c, agent, opening("signal"))
	if err != nil || next.ID == first.ID {
		t.Fatalf("after resolving: %+v, %v; want a new incident", next, err)
	}
	open, err := s.Incidents(c, store.IncidentFilter{Open: true})
	if err != nil || len(open) != 1 || open[0].ID != next.ID {
		t.Fatalf("open incidents: %+v, %v", open, err)
	}
	all, err := s.Incidents(c, store.IncidentFilter{AgentID: agent})
	if err != nil || len(all) != 2 || all[0].ID != first.ID {
		t.Fatalf("the agent's incidents: %+v, %v", all, err)
	}
	newest, err := s.Incidents(c, store.IncidentFilter{AgentID: agent, Newest: true, Limit: 1})
	if err != nil || len(newest) != 1 || newest[0].ID != next.ID {
		t.Fatalf("the agent's newest incident: %+v, %v", newest, err)
	}
	page, err := s.Incidents(c, store.IncidentFilter{After: first.ID, Limit: 5})
	if err != nil || len(page) != 1 || page[0].ID != next.ID {
		t.Fatalf("the page after the first: %+v, %v", page, err)
	}
	if _, err := s.Incident(c, "inc_none"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown incident: %v", err)
	}
	if _, err := s.UpdateIncident(c, "inc_none", store.Event{}, note("x")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update of an unknown incident: %v", err)
	}
}

// Replicas opening an agent's incident at once make one: the others see
// ErrConflict (and retry into the one that won) or update it.
func testIncidentsConcurrent(t *testing.T, s store.Store) {
	c := ctx(t)
	agent := "ai-agent://prod/finance/racer"
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for try := 0; try < 3; try++ {
				_, err := s.UpdateOpenIncident(c, agent, func(inc *store.Incident, _ bool) (store.Event, error) {
					inc.Note(store.IncidentEvent{Time: time.Now(), Kind: "signal"})
					return store.Event{}, nil
				})
				if !errors.Is(err, store.ErrConflict) {
					if err != nil {
						t.Error(err)
					}
					return
				}
			}
			t.Error("still in conflict after three tries")
		}()
	}
	wg.Wait()
	incs, err := s.Incidents(c, store.IncidentFilter{AgentID: agent})
	if err != nil || len(incs) != 1 || len(incs[0].Timeline) != 8 {
		t.Fatalf("incidents: %+v, %v; want one with 8 events", incs, err)
	}
}
