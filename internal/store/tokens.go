package store

import (
	"context"
	"time"
)

// RevokedToken records that one access token, by its jti, may no longer be used.
type RevokedToken struct {
	JTI     string
	AgentID string
	// ExpiresAt is the token's own expiry; the record can go after it.
	ExpiresAt time.Time
	RevokedAt time.Time
}

// RevocationStore keeps revoked token ids until the tokens expire.
type RevocationStore interface {
	// RevokeToken records a revocation and its Event; revoking twice is not an error.
	RevokeToken(ctx context.Context, rt RevokedToken, ev Event) error
	// RevokedTokens returns the revocations whose tokens have not expired at now.
	RevokedTokens(ctx context.Context, now time.Time) ([]RevokedToken, error)
}

// ReplayStore remembers single-use values (client assertion ids) across
// restarts and replicas.
type ReplayStore interface {
	// MarkUsed records value in scope until expires. It returns ErrReplay when
	// the value was already recorded in that scope.
	MarkUsed(ctx context.Context, scope, value string, expires time.Time) error
}

// MetaStore keeps small deployment-wide values, such as the hash of the
// bootstrap admin token.
type MetaStore interface {
	// Meta returns the value under key; ErrNotFound when there is none.
	Meta(ctx context.Context, key string) ([]byte, error)
	// PutMetaIfAbsent stores value under key unless the key exists. It reports
	// whether it stored it.
	PutMetaIfAbsent(ctx context.Context, key string, value []byte) (bool, error)
	// SwapMeta replaces the value under key with value if it is still old.
	// It reports whether it replaced it; ErrNotFound when there is none.
	SwapMeta(ctx context.Context, key string, old, value []byte) (bool, error)
	// SwapMetaWithEvent is SwapMeta with ev stored in the same transaction
	// when the value is replaced.
	SwapMetaWithEvent(ctx context.Context, key string, old, value []byte, ev Event) (bool, error)
}
