package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"
)

// IncidentStatus is where an incident stands.
type IncidentStatus string

// Incident statuses: open and acknowledged incidents are the agent's
// current episode; a resolved one is closed.
const (
	IncidentOpen         IncidentStatus = "open"
	IncidentAcknowledged IncidentStatus = "acknowledged"
	IncidentResolved     IncidentStatus = "resolved"
)

// Valid reports whether s is one of the known statuses.
func (s IncidentStatus) Valid() bool {
	return s == IncidentOpen || s == IncidentAcknowledged || s == IncidentResolved
}

// Incident is one episode of an agent's risk: what fired, what was done
// about it, who acknowledged and resolved it. An agent has at most one
// incident that is not resolved.
type Incident struct {
	ID        string         `json:"id"`
	AgentID   string         `json:"agent"`
	Status    IncidentStatus `json:"status"`
	OpenedAt  time.Time      `json:"opened_at"`
	UpdatedAt time.Time      `json:"updated_at"`
	// Level is the highest risk level the episode reached.
	Level string `json:"level"`
	// Actions are the responses in force or taken, by name.
	Actions  []IncidentAction `json:"actions"`
	Timeline []IncidentEvent  `json:"timeline"`
	// Dropped counts timeline events left out past MaxTimeline.
	Dropped int `json:"dropped,omitempty"`
}

// IncidentAction is a response taken in an incident.
type IncidentAction struct {
	Action string    `json:"action"`
	At     time.Time `json:"at"`
	// Expires, when set, is when the response is undone by itself.
	Expires time.Time `json:"expires,omitzero"`
	// Ended is when it was undone (expired or released).
	Ended  time.Time `json:"ended,omitzero"`
	Reason string    `json:"reason,omitempty"`
}

// IncidentEvent is one line of an incident's timeline.
type IncidentEvent struct {
	Time time.Time `json:"time"`
	// Kind is signal, action, expired, acknowledged, resolved or note.
	Kind       string   `json:"kind"`
	AuditIndex int64    `json:"audit_index,omitempty"`
	Signals    []string `json:"signals,omitempty"`
	Score      int      `json:"score,omitempty"`
	Level      string   `json:"level,omitempty"`
	Action     string   `json:"action,omitempty"`
	Actor      string   `json:"actor,omitempty"`
	Note       string   `json:"note,omitempty"`
}

// MaxTimeline bounds an incident's timeline: past it, events are counted
// in Dropped, not kept (the audit log keeps every one).
const MaxTimeline = 500

// IncidentFilter selects incidents. Zero fields match everything.
type IncidentFilter struct {
	AgentID string
	Status  IncidentStatus
	// Open selects incidents that are not resolved.
	Open bool
	// After is a paging cursor: only incidents with a greater id.
	After string
	// Newest lists the newest first (After is then ignored).
	Newest bool
	Limit  int
}

// IncidentStore keeps incidents.
type IncidentStore interface {
	// UpdateOpenIncident applies fn to the agent's incident that is not
	// resolved or, when it has none, to a new one (fresh; id, agent, status
	// open and times set), and stores the result, in one transaction with
	// the event fn returns when its Action is set.
	UpdateOpenIncident(ctx context.Context, agent string, fn func(inc *Incident, fresh bool) (Event, error)) (Incident, error)
	// UpdateIncident applies fn to incident id and stores the result, in
	// one transaction with ev; ErrNotFound when there is none.
	UpdateIncident(ctx context.Context, id string, ev Event, fn func(*Incident) error) (Incident, error)
	// Incident returns one incident; ErrNotFound when there is none.
	Incident(ctx context.Context, id string) (Incident, error)
	// Incidents lists incidents ordered by id (which orders them by opening).
	Incidents(ctx context.Context, f IncidentFilter) ([]Incident, error)
}

// NewIncidentID makes an incident id that sorts by t: "inc_", the time in
// unix microseconds as 14 hex digits, and 8 random hex digits.
func NewIncidentID(t time.Time) string {
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("inc_%014x%s", t.UnixMicro(), hex.EncodeToString(b[:]))
}

// NewIncident is the incident a first update of agent's episode starts from.
func NewIncident(agent string, now time.Time) Incident {
	now = Time(now)
	return Incident{ID: NewIncidentID(now), AgentID: agent, Status: IncidentOpen, OpenedAt: now, UpdatedAt: now,
		Actions: []IncidentAction{}, Timeline: []IncidentEvent{}}
}

// Note adds ev to the timeline, or counts it past MaxTimeline.
func (inc *Incident) Note(ev IncidentEvent) {
	if len(inc.Timeline) >= MaxTimeline {
		inc.Dropped++
		return
	}
	inc.Timeline = append(inc.Timeline, ev)
}

// CheckIncidentUpdate refuses an update that changed what an incident is
// (its id or agent) or left it malformed; backends call it before writing.
func CheckIncidentUpdate(id, agent string, inc *Incident) error {
	switch {
	case inc.ID != id || inc.AgentID != agent:
		return fmt.Errorf("incident %s: the id and agent cannot change", id)
	case !inc.Status.Valid():
		return fmt.Errorf("incident %s: status %q: want open, acknowledged or resolved", id, inc.Status)
	}
	inc.UpdatedAt = Time(inc.UpdatedAt)
	return nil
}
