package store

import (
	"context"
	"time"
)

// Human is a person who signed in through the OpenID provider. ID is
// "human:<issuer>#<subject>": the provider's own, stable name for them.
type Human struct {
	ID      string `json:"id"`
	Issuer  string `json:"issuer"`
	Subject string `json:"subject"`
	Email   string `json:"email,omitempty"`
	Name    string `json:"name,omitempty"`
	// Roles are those of the latest sign-in, from the provider's groups.
	Roles     []string  `json:"roles"`
	FirstSeen time.Time `json:"first_seen"`
	LastLogin time.Time `json:"last_login"`
}

// HumanSession is a signed-in person's Warden session. Only the SHA-256
// digest of its token is kept.
type HumanSession struct {
	Digest    string    `json:"digest"`
	HumanID   string    `json:"human"`
	Roles     []string  `json:"roles"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// HumanStore keeps people and their sessions.
type HumanStore interface {
	// SignIn stores h (new, or updated keeping FirstSeen) and a new
	// session s, with ev, in one transaction.
	SignIn(ctx context.Context, h Human, s HumanSession, ev Event) error
	// HumanSession returns the session with this digest and its person;
	// ErrNotFound when there is none.
	HumanSession(ctx context.Context, digest string) (HumanSession, Human, error)
	// RevokeHumanSession ends a session at t, with ev; ErrNotFound when
	// there is none.
	RevokeHumanSession(ctx context.Context, digest string, t time.Time, ev Event) error
	// Human returns one person; ErrNotFound when unknown.
	Human(ctx context.Context, id string) (Human, error)
	// Humans lists everyone who ever signed in, by id.
	Humans(ctx context.Context) ([]Human, error)
}
