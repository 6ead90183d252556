package store

import (
	"context"
	"encoding/json"
	"slices"
	"time"
)

// AgentStatus is the lifecycle state of an agent.
type AgentStatus string

// Agent statuses. Quarantined and disabled agents get no tokens and their live
// tokens are refused; restricted agents keep working with reduced permissions.
const (
	StatusActive      AgentStatus = "active"
	StatusRestricted  AgentStatus = "restricted"
	StatusQuarantined AgentStatus = "quarantined"
	StatusDisabled    AgentStatus = "disabled"
)

// Valid reports whether s is one of the known statuses.
func (s AgentStatus) Valid() bool {
	switch s {
	case StatusActive, StatusRestricted, StatusQuarantined, StatusDisabled:
		return true
	}
	return false
}

// MayHoldTokens reports whether an agent in this status may obtain and use tokens.
func (s AgentStatus) MayHoldTokens() bool {
	return s == StatusActive || s == StatusRestricted
}

// Agent is the registry record of one agent.
type Agent struct {
	ID          string            `json:"id"`
	TrustDomain string            `json:"trust_domain"`
	Roles       []string          `json:"roles"`
	Owner       string            `json:"owner"`
	Attributes  map[string]string `json:"attributes"`
	Status      AgentStatus       `json:"status"`
	Keys        []AgentKey        `json:"keys"`
	// TokensRevokedAt, when set, kills every token of this agent issued at or
	// before that second.
	TokensRevokedAt time.Time `json:"tokens_revoked_at,omitzero"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
}

// AgentKey is one public key registered for an agent.
type AgentKey struct {
	// KID is the RFC 7638 thumbprint of the key.
	KID string `json:"kid"`
	// JWK is the public key as a JSON Web Key.
	JWK     json.RawMessage `json:"jwk"`
	AddedAt time.Time       `json:"added_at"`
	// RetireAt, when set, is the moment the key stops being accepted.
	RetireAt time.Time `json:"retire_at,omitzero"`
}

// ActiveAt reports whether the key is accepted at t.
func (k AgentKey) ActiveAt(t time.Time) bool {
	return k.RetireAt.IsZero() || t.Before(k.RetireAt)
}

// AgentFilter selects agents in Agents. Zero fields match everything.
type AgentFilter struct {
	TrustDomain string
	Status      AgentStatus
	// After is a paging cursor: only ids greater than it are returned.
	After string
	// Limit caps the result; zero means no limit.
	Limit int
}

// AgentStore keeps the agent registry. Every mutation records its Event in
// the same transaction and announces a ChangeAgent on the change feed. A key
// (by kid) is registered once only: adding a key that any agent has had
// before, retired and forgotten ones included, is ErrConflict.
type AgentStore interface {
	// CreateAgent stores a new agent; ErrConflict when the id exists.
	CreateAgent(ctx context.Context, a Agent, ev Event) error
	// Agent returns one agent; ErrNotFound when there is none.
	Agent(ctx context.Context, id string) (Agent, error)
	// Agents lists agents ordered by id.
	Agents(ctx context.Context, f AgentFilter) ([]Agent, error)
	// UpdateAgent reads the agent, applies fn and writes the result, all in one
	// transaction. An error from fn aborts it and is returned unchanged.
	UpdateAgent(ctx context.Context, id string, ev Event, fn func(*Agent) error) (Agent, error)
}

// NewKeyIDs returns the kids of after's keys that before does not have.
func NewKeyIDs(before, after Agent) []string {
	var out []string
	for _, k := range after.Keys {
		if !slices.ContainsFunc(before.Keys, func(b AgentKey) bool { return b.KID == k.KID }) {
			out = append(out, k.KID)
		}
	}
	return out
}
