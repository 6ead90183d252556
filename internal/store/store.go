// Package store defines Warden's persistent state: the records, small
// per-domain interfaces over them, and the errors every backend returns.
// The sqlite and postgres packages implement it; storetest checks both.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors every backend returns, to be tested with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("already exists or changed concurrently")
	ErrReplay   = errors.New("already used")
)

// Store is everything Warden keeps. Backends implement all of it;
// consumers should accept the narrowest interface they need.
type Store interface {
	AgentStore
	SigningKeyStore
	RevocationStore
	ReplayStore
	EventStore
	MetaStore
	PolicyStore
	EnforcementPointStore
	TaintStore
	IncidentStore
	ApprovalStore
	HumanStore
	GrantStore
	ChangeFeed

	// Backend names the implementation: "sqlite" or "postgres".
	Backend() string
	// Ping checks that the store answers.
	Ping(ctx context.Context) error
	// Prune deletes replay records and token revocations that expired before now.
	Prune(ctx context.Context, now time.Time) error
	// Close releases every connection and stops the change feed.
	Close() error
}

// Now returns the current time as the stores keep it: UTC, microsecond precision.
func Now() time.Time { return Time(time.Now()) }

// Time normalises t to what every backend can round-trip: UTC, microseconds.
func Time(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}
