package store

import (
	"context"
	"time"
)

// PolicyVersion is one stored version of a policy bundle. Versions are
// immutable: a version's ID is the digest of its files.
type PolicyVersion struct {
	// ID is the bundle's content digest, "sha256:<hex>".
	ID string `json:"id"`
	// Parent is the version that was active when this one was pushed, "" when none was.
	Parent    string    `json:"parent,omitempty"`
	Author    string    `json:"author"`
	Message   string    `json:"message"`
	CreatedAt time.Time `json:"created_at"`
	// Files are the bundle's files by slash path. Left out of listings.
	Files map[string][]byte `json:"-"`
	// Tests summarises the test run that let the version in (a JSON object).
	Tests []byte `json:"-"`
}

// PolicyState is which versions are live.
type PolicyState struct {
	// Active is the version that decides, "" before any activation.
	Active string `json:"active"`
	// Shadow is evaluated beside Active on live traffic and never enforced, "" for none.
	Shadow string `json:"shadow,omitempty"`
	// Activation is the record that made Active active (zero before any).
	Activation PolicyActivation `json:"activation"`
}

// PolicyActivation records one change of the active version.
type PolicyActivation struct {
	Seq     int64     `json:"seq"`
	Version string    `json:"version"`
	Kind    string    `json:"kind"` // "activate" or "rollback"
	Actor   string    `json:"actor"`
	Time    time.Time `json:"time"`
	// Undo is the Seq of the activation that a rollback from this one
	// returns to: for an activate, the one that was current before it; for
	// a rollback, the Undo of the activation it returned to. 0 when there is
	// none.
	Undo int64 `json:"undo,omitempty"`
}

// Activation kinds.
const (
	ActivationActivate = "activate"
	ActivationRollback = "rollback"
)

// PolicyStore keeps policy versions and which of them is live. Every
// mutation records its Event in the same transaction, and a change of the
// active or shadow version announces ChangePolicy on the change feed.
type PolicyStore interface {
	// AddPolicyVersion stores a version; ErrConflict when its ID is stored already.
	AddPolicyVersion(ctx context.Context, v PolicyVersion, ev Event) error
	// PolicyVersion returns one version with its files; ErrNotFound when there is none.
	PolicyVersion(ctx context.Context, id string) (PolicyVersion, error)
	// PolicyVersions lists versions newest first, without files: at most
	// limit (0: all), created before the version before ("" : from the newest).
	PolicyVersions(ctx context.Context, before string, limit int) ([]PolicyVersion, error)
	// PolicyState returns the live versions.
	PolicyState(ctx context.Context) (PolicyState, error)
	// ActivatePolicy makes a stored version active. expect is the version
	// the caller believes active ("" for none): when another is active,
	// nothing changes and ErrConflict is returned. ErrNotFound when id is
	// not stored. The new activation's Undo is the current activation.
	ActivatePolicy(ctx context.Context, id, expect string, at time.Time, actor string, ev Event) (PolicyState, error)
	// RollbackPolicy makes active the version of the activation that the
	// current one undoes (its Undo), and that activation's Undo becomes the
	// new one's: rolling back again goes further back. expect is as for
	// ActivatePolicy; to, when not "", is the version the caller means to
	// return to: when the current activation undoes to another (the history
	// changed since the caller read it), nothing changes and ErrConflict is
	// returned. ErrNotFound when there is nothing to roll back to.
	RollbackPolicy(ctx context.Context, expect, to string, at time.Time, actor string, ev Event) (PolicyState, error)
	// SetShadowPolicy attaches a stored version as the shadow, or detaches
	// it with id "". ErrNotFound when id is not stored.
	SetShadowPolicy(ctx context.Context, id string, ev Event) (PolicyState, error)
	// PolicyActivations lists activations newest first, at most limit (0: all).
	PolicyActivations(ctx context.Context, limit int) ([]PolicyActivation, error)
	// PolicyActivation returns one activation; ErrNotFound when there is none.
	PolicyActivation(ctx context.Context, seq int64) (PolicyActivation, error)
}
