package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/warden-run/warden/internal/store"
)

// RevokeToken implements store.RevocationStore.
func (s *Store) RevokeToken(ctx context.Context, rt store.RevokedToken, ev store.Event) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO revoked_tokens (jti, agent_id, expires_at, revoked_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (jti) DO NOTHING`, rt.JTI, rt.AgentID, rt.ExpiresAt, rt.RevokedAt); err != nil {
			return fmt.Errorf("revoke token: %w", err)
		}
		if err := insertEvent(ctx, tx, ev); err != nil {
			return err
		}
		return s.notify(ctx, tx, store.Change{Kind: store.ChangeTokenRevoked, Key: rt.JTI})
	})
}

// RevokedTokens implements store.RevocationStore.
func (s *Store) RevokedTokens(ctx context.Context, now time.Time) ([]store.RevokedToken, error) {
	rows, err := s.pool.Query(ctx, `SELECT jti, agent_id, expires_at, revoked_at FROM revoked_tokens
		WHERE expires_at >= $1 ORDER BY jti`, now)
	if err != nil {
		return nil, fmt.Errorf("list revoked tokens: %w", err)
	}
	defer rows.Close()
	var out []store.RevokedToken
	for rows.Next() {
		var rt store.RevokedToken
		if err := rows.Scan(&rt.JTI, &rt.AgentID, &rt.ExpiresAt, &rt.RevokedAt); err != nil {
			return nil, err
		}
		rt.ExpiresAt, rt.RevokedAt = rt.ExpiresAt.UTC(), rt.RevokedAt.UTC()
		out = append(out, rt)
	}
	return out, rows.Err()
}

// MarkUsed implements store.ReplayStore.
func (s *Store) MarkUsed(ctx context.Context, scope, value string, expires time.Time) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO used_values (scope, value, expires_at) VALUES ($1, $2, $3)`, scope, value, expires)
	if isUniqueViolation(err) {
		return store.ErrReplay
	}
	if err != nil {
		return fmt.Errorf("record used value: %w", err)
	}
	return nil
}

// Meta implements store.MetaStore.
func (s *Store) Meta(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := s.pool.QueryRow(ctx, `SELECT value FROM meta WHERE key = $1`, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("meta %s: %w", key, store.ErrNotFound)
	}
	return v, err
}

// PutMetaIfAbsent implements store.MetaStore.
func (s *Store) PutMetaIfAbsent(ctx context.Context, key string, value []byte) (bool, error) {
	tag, err := s.pool.Exec(ctx, `INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, key, value)
	if err != nil {
		return false, fmt.Errorf("put meta %s: %w", key, err)
	}
	return tag.RowsAffected() == 1, nil
}

// SwapMeta implements store.MetaStore.
func (s *Store) SwapMeta(ctx context.Context, key string, old, value []byte) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE meta SET value = $1 WHERE key = $2 AND value = $3`, value, key, old)
	if err != nil {
		return false, fmt.Errorf("swap meta %s: %w", key, err)
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	if _, err := s.Meta(ctx, key); err != nil {
		return false, err
	}
	return false, nil
}

// SwapMetaWithEvent implements store.MetaStore.
func (s *Store) SwapMetaWithEvent(ctx context.Context, key string, old, value []byte, ev store.Event) (bool, error) {
	swapped := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE meta SET value = $1 WHERE key = $2 AND value = $3`, value, key, old)
		if err != nil {
			return fmt.Errorf("swap meta %s: %w", key, err)
		}
		if tag.RowsAffected() != 1 {
			return nil
		}
		swapped = true
		return insertEvent(ctx, tx, ev)
	})
	if err != nil || swapped {
		return swapped, err
	}
	if _, err := s.Meta(ctx, key); err != nil {
		return false, err
	}
	return false, nil
}
