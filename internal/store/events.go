package store

import (
	"context"
	"encoding/json"
	"time"
)

// Event records one administrative action: who did what to which target, when.
type Event struct {
	// Seq is assigned by the store, increasing.
	Seq    int64     `json:"seq"`
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	// Detail is a JSON object with action-specific fields; never secrets.
	Detail json.RawMessage `json:"detail,omitempty"`
}

// EventFilter selects events. Zero fields match everything.
type EventFilter struct {
	Target string
	// After is a paging cursor: only events with a greater Seq are returned.
	After int64
	Limit int
}

// EventStore reads the record of administrative actions. Events are written
// by the mutations they describe, in the same transaction.
type EventStore interface {
	// RecordEvent stores an event that has no other state change with it.
	RecordEvent(ctx context.Context, ev Event) error
	Events(ctx context.Context, f EventFilter) ([]Event, error)
}
