package store

import (
	"context"
	"time"
)

// EnforcementPoint is a registered policy enforcement point (an MCP
// gateway, a proxy, an in-process SDK): a name and the digest of the
// credential it authenticates to the decision point with.
type EnforcementPoint struct {
	Name string `json:"name"`
	// CredentialDigest is the SHA-256 of the credential; the credential
	// itself is shown once, when it is issued, and never stored.
	CredentialDigest []byte    `json:"-"`
	Description      string    `json:"description,omitempty"`
	CreatedAt        time.Time `json:"created_at"`
	CreatedBy        string    `json:"created_by"`
	// RevokedAt, when set, is when the credential stopped being accepted.
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// EnforcementPointStore keeps the registered enforcement points. Every
// mutation records its Event in the same transaction and announces
// ChangeEnforcementPoints on the change feed.
type EnforcementPointStore interface {
	// RegisterEnforcementPoint stores p, replacing a revoked one of the same
	// name; ErrConflict when a live one has the name, or another has the
	// same credential digest.
	RegisterEnforcementPoint(ctx context.Context, p EnforcementPoint, ev Event) error
	// EnforcementPoints lists every registered one, revoked ones included, by name.
	EnforcementPoints(ctx context.Context) ([]EnforcementPoint, error)
	// RevokeEnforcementPoint revokes the live one named name at at;
	// ErrNotFound when there is no live one of that name.
	RevokeEnforcementPoint(ctx context.Context, name string, at time.Time, ev Event) (EnforcementPoint, error)
}
