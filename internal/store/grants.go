package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// GrantStatus is where a task grant stands. Only an active grant, before
// it expires, reaches policy.
type GrantStatus string

// Grant statuses.
const (
	GrantPending   GrantStatus = "pending" // waiting for approvals
	GrantActive    GrantStatus = "active"
	GrantRevoked   GrantStatus = "revoked"
	GrantExpired   GrantStatus = "expired"
	GrantCompleted GrantStatus = "completed" // its task is done
	GrantRejected  GrantStatus = "rejected"  // its approval was rejected or expired
)

// Valid reports whether s is a known status.
func (s GrantStatus) Valid() bool {
	switch s {
	case GrantPending, GrantActive, GrantRevoked, GrantExpired, GrantCompleted, GrantRejected:
		return true
	}
	return false
}

// Live reports whether a grant in status s may still be (or become) in force.
func (s GrantStatus) Live() bool { return s == GrantPending || s == GrantActive }

// ChangeGrant: an agent's grants changed; Key is the agent id.
const ChangeGrant ChangeKind = "grant"

// Grant is a just-in-time, task-scoped grant: for one agent (and one task,
// when set), the actions on the resources it names, with the argument
// values it fixes, until it expires, is revoked or its task completes.
type Grant struct {
	ID    string `json:"id"`
	Agent string `json:"agent"`
	// Task, when set, limits the grant to tokens bound to that task.
	Task string `json:"task,omitempty"`
	// Actions are action names ("tools/call"); Resources are resource ids,
	// where a final "*" matches any rest ("pacs/studies/1.2.840/*").
	Actions   []string `json:"actions"`
	Resources []string `json:"resources"`
	// Constraints fix argument values: each key an argument, each value
	// what it must be.
	Constraints map[string]any `json:"constraints,omitempty"`
	Reason      string         `json:"reason,omitempty"`
	RequestedBy string         `json:"requested_by"`
	Status      GrantStatus    `json:"status"`
	// ApprovalID is the approval request of a grant that needed one.
	ApprovalID string    `json:"approval_id,omitempty"`
	Lifetime   Duration  `json:"lifetime"`
	CreatedAt  time.Time `json:"created_at"`
	// ExpiresAt is set when the grant becomes active: its lifetime runs
	// from then.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
	EndedBy   string    `json:"ended_by,omitempty"`
	EndReason string    `json:"end_reason,omitempty"`
}

// Duration is a time.Duration written as "1h30m" in JSON.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// InForce reports whether g is active and unexpired at now.
func (g *Grant) InForce(now time.Time) bool {
	return g.Status == GrantActive && now.Before(g.ExpiresAt)
}

// GrantFilter selects grants. Zero fields match everything.
type GrantFilter struct {
	Agent  string
	Task   string
	Status GrantStatus
	// Live selects pending and active grants.
	Live  bool
	After string
	Limit int
}

// GrantStore keeps task grants. A change to an agent's grants is announced
// on the change feed (ChangeGrant).
type GrantStore interface {
	// CreateGrant stores a new grant with ev, in one transaction.
	CreateGrant(ctx context.Context, g Grant, ev Event) error
	// UpdateGrant applies fn to grant id and stores the result, with the
	// event fn returns when its Action is set, in one transaction (the row
	// locked); ErrNotFound when there is none. An error from fn changes
	// nothing.
	UpdateGrant(ctx context.Context, id string, fn func(*Grant) (Event, error)) (Grant, error)
	// Grant returns one grant; ErrNotFound when there is none.
	Grant(ctx context.Context, id string) (Grant, error)
	// Grants lists grants ordered by id.
	Grants(ctx context.Context, f GrantFilter) ([]Grant, error)
}

// NewGrantID makes a grant id that sorts by t.
func NewGrantID(t time.Time) string {
	var b [5]byte
	rand.Read(b[:])
	return fmt.Sprintf("grt_%014x%s", t.UnixMicro(), hex.EncodeToString(b[:]))
}

// CheckGrantUpdate refuses an update that changed what a grant is for, or
// brought an ended grant back.
func CheckGrantUpdate(before, after *Grant) error {
	switch {
	case before.ID != after.ID || before.Agent != after.Agent || before.Task != after.Task:
		return fmt.Errorf("grant %s: its agent and task cannot change", before.ID)
	case !after.Status.Valid():
		return fmt.Errorf("grant %s: status %q", before.ID, after.Status)
	case !before.Status.Live() && after.Status != before.Status:
		return fmt.Errorf("grant %s: %s is final", before.ID, before.Status)
	}
	return nil
}
