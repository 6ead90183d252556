package store

import (
	"context"
	"time"
)

// EnforcementPoint is a registered policy enforcement point (an MCP
// gateway, a proxy, an in-process SDK): a name, the digest of the
// credential it authenticates to the decision point with, the resource it
// serves and what it is trusted to report.
type EnforcementPoint struct {
	Name string `json:"name"`
	// CredentialDigest is the SHA-256 of the credential; the credential
	// itself is shown once, when it is issued, and never stored.
	CredentialDigest []byte `json:"-"`
	Description      string `json:"description,omitempty"`
	// Audience is the resource the enforcement point serves, as the tokens
	// agents present to it name it (aud). NoAudience says it was registered
	// without one deliberately; neither is set for a point registered
	// before enforcement points had audiences (AudienceUnset).
	Audience   string `json:"audience,omitempty"`
	NoAudience bool   `json:"no_audience,omitempty"`
	// Trust names the request context fields taken on its word (such as
	// "source_ip" and "session"); the store keeps them as given.
	Trust     []string  `json:"trust"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	// RevokedAt, when set, is when the credential stopped being accepted.
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// AudienceUnset says p was registered before enforcement points had
// audiences: it has none, and nobody chose that.
func (p EnforcementPoint) AudienceUnset() bool { return p.Audience == "" && !p.NoAudience }

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
