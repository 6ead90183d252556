package store

import (
	"context"
	"time"
)

// SigningKey is one of the issuer's token signing keys.
type SigningKey struct {
	// KID is the RFC 7638 thumbprint of the public key.
	KID string
	// Alg is the JOSE algorithm, "EdDSA".
	Alg string
	// PublicJWK is the public key as a JSON Web Key.
	PublicJWK []byte
	// Sealed is the private key encrypted under the deployment's master key.
	Sealed    []byte
	CreatedAt time.Time
	// Active marks the one key that signs new tokens.
	Active bool
	// RetireAt, when set, is when the key leaves the published key set:
	// after every token it signed has expired.
	RetireAt time.Time
}

// SigningKeyStore keeps the issuer's signing keys.
type SigningKeyStore interface {
	// SigningKeys returns every stored key: the active one first, then newest first.
	SigningKeys(ctx context.Context) ([]SigningKey, error)
	// RotateSigningKey makes next the active key and schedules the key that was
	// active to retire at prevRetireAt, in one transaction; keys already
	// retiring later than that are brought forward to it. prevKID names the
	// key the caller believes is active ("" for none); when another key is
	// active, nothing changes and ErrConflict is returned.
	RotateSigningKey(ctx context.Context, prevKID string, next SigningKey, prevRetireAt time.Time, ev Event) error
	// DeleteSigningKeys removes keys whose RetireAt is before t.
	DeleteSigningKeys(ctx context.Context, retiredBefore time.Time) (int, error)
}
