package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/warden-run/warden/internal/store"
)

// SigningKeys implements store.SigningKeyStore.
func (s *Store) SigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT kid, alg, public_jwk, sealed, created_at, active, retire_at
		FROM signing_keys ORDER BY active DESC, created_at DESC, kid`)
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	defer rows.Close()
	var out []store.SigningKey
	for rows.Next() {
		var (
			k       store.SigningKey
			created int64
			retire  sql.NullInt64
		)
		if err := rows.Scan(&k.KID, &k.Alg, &k.PublicJWK, &k.Sealed, &created, &k.Active, &retire); err != nil {
			return nil, err
		}
		k.CreatedAt, k.RetireAt = fromMicros(created), fromNullMicros(retire)
		out = append(out, k)
	}
	return out, rows.Err()
}

// RotateSigningKey implements store.SigningKeyStore.
func (s *Store) RotateSigningKey(ctx context.Context, prevKID string, next store.SigningKey, prevRetireAt time.Time, ev store.Event) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var active string
		err := tx.QueryRowContext(ctx, `SELECT kid FROM signing_keys WHERE active = 1`).Scan(&active)
		if err != nil && err != sql.ErrNoRows {
			return err
		}
		if active != prevKID {
			return fmt.Errorf("rotate signing key: active key is %q, not %q: %w", active, prevKID, store.ErrConflict)
		}
		if active != "" {
			if _, err := tx.ExecContext(ctx, `UPDATE signing_keys SET active = 0, retire_at = ? WHERE kid = ?`,
				micros(prevRetireAt), active); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE signing_keys SET retire_at = ? WHERE active = 0 AND retire_at > ?`,
			micros(prevRetireAt), micros(prevRetireAt)); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO signing_keys (kid, alg, public_jwk, sealed, created_at, active, retire_at)
			VALUES (?, ?, ?, ?, ?, 1, NULL)`, next.KID, next.Alg, next.PublicJWK, next.Sealed, micros(next.CreatedAt))
		if isConstraint(err) {
			return fmt.Errorf("signing key %s: %w", next.KID, store.ErrConflict)
		}
		if err != nil {
			return err
		}
		return insertEvent(ctx, tx, ev)
	})
	if err != nil {
		return err
	}
	s.feed.Publish(store.Change{Kind: store.ChangeSigningKeys})
	return nil
}

// DeleteSigningKeys implements store.SigningKeyStore.
func (s *Store) DeleteSigningKeys(ctx context.Context, retiredBefore time.Time) (int, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM signing_keys WHERE active = 0 AND retire_at < ?`, micros(retiredBefore))
	if err != nil {
		return 0, fmt.Errorf("delete signing keys: %w", err)
	}
	n, _ := res.RowsAffected()
	if n > 0 {
		s.feed.Publish(store.Change{Kind: store.ChangeSigningKeys})
	}
	return int(n), nil
}
