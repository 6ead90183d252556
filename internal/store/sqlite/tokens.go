package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/warden-run/warden/internal/store"
)

// RevokeToken implements store.RevocationStore.
func (s *Store) RevokeToken(ctx context.Context, rt store.RevokedToken, ev store.Event) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO revoked_tokens (jti, agent_id, expires_at, revoked_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (jti) DO NOTHING`, rt.JTI, rt.AgentID, micros(rt.ExpiresAt), micros(rt.RevokedAt)); err != nil {
			return fmt.Errorf("revoke token: %w", err)
		}
		return insertEvent(ctx, tx, ev)
	})
	if err != nil {
		return err
	}
	s.feed.Publish(store.Change{Kind: store.ChangeTokenRevoked, Key: rt.JTI})
	return nil
}

// RevokedTokens implements store.RevocationStore.
func (s *Store) RevokedTokens(ctx context.Context, now time.Time) ([]store.RevokedToken, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT jti, agent_id, expires_at, revoked_at FROM revoked_tokens
		WHERE expires_at >= ? ORDER BY jti`, micros(now))
	if err != nil {
		return nil, fmt.Errorf("list revoked tokens: %w", err)
	}
	defer rows.Close()
	var out []store.RevokedToken
	for rows.Next() {
		var (
			rt           store.RevokedToken
			exp, revoked int64
		)
		if err := rows.Scan(&rt.JTI, &rt.AgentID, &exp, &revoked); err != nil {
			return nil, err
		}
		rt.ExpiresAt, rt.RevokedAt = fromMicros(exp), fromMicros(revoked)
		out = append(out, rt)
	}
	return out, rows.Err()
}

// Meta implements store.MetaStore.
func (s *Store) Meta(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := s.r.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("meta %s: %w", key, store.ErrNotFound)
	}
	return v, err
}

// PutMetaIfAbsent implements store.MetaStore.
func (s *Store) PutMetaIfAbsent(ctx context.Context, key string, value []byte) (bool, error) {
	res, err := s.w.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING`, key, value)
	if err != nil {
		return false, fmt.Errorf("put meta %s: %w", key, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// SwapMeta implements store.MetaStore.
func (s *Store) SwapMeta(ctx context.Context, key string, old, value []byte) (bool, error) {
	res, err := s.w.ExecContext(ctx, `UPDATE meta SET value = ? WHERE key = ? AND value = ?`, value, key, old)
	if err != nil {
		return false, fmt.Errorf("swap meta %s: %w", key, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
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
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE meta SET value = ? WHERE key = ? AND value = ?`, value, key, old)
		if err != nil {
			return fmt.Errorf("swap meta %s: %w", key, err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
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
