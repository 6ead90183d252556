package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/warden-run/warden/internal/store"
)

// SigningKeys implements store.SigningKeyStore.
func (s *Store) SigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT kid, alg, public_jwk, sealed, created_at, active, retire_at
		FROM signing_keys ORDER BY active DESC, created_at DESC, kid`)
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	defer rows.Close()
	var out []store.SigningKey
	for rows.Next() {
		var (
			k      store.SigningKey
			retire *time.Time
		)
		if err := rows.Scan(&k.KID, &k.Alg, &k.PublicJWK, &k.Sealed, &k.CreatedAt, &k.Active, &retire); err != nil {
			return nil, err
		}
		k.CreatedAt, k.RetireAt = k.CreatedAt.UTC(), fromNullTime(retire)
		out = append(out, k)
	}
	return out, rows.Err()
}

// RotateSigningKey implements store.SigningKeyStore.
func (s *Store) RotateSigningKey(ctx context.Context, prevKID string, next store.SigningKey, prevRetireAt time.Time, ev store.Event) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Serialise rotations across replicas, also when no key exists yet.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('warden.signing_keys'))`); err != nil {
			return err
		}
		var active string
		err := tx.QueryRow(ctx, `SELECT kid FROM signing_keys WHERE active`).Scan(&active)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if active != prevKID {
			return fmt.Errorf("rotate signing key: active key is %q, not %q: %w", active, prevKID, store.ErrConflict)
		}
		if active != "" {
			if _, err := tx.Exec(ctx, `UPDATE signing_keys SET active = false, retire_at = $1 WHERE kid = $2`,
				prevRetireAt, active); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE signing_keys SET retire_at = $1 WHERE NOT active AND retire_at > $1`,
			prevRetireAt); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO signing_keys (kid, alg, public_jwk, sealed, created_at, active, retire_at)
			VALUES ($1, $2, $3, $4, $5, true, NULL)`, next.KID, next.Alg, next.PublicJWK, next.Sealed, next.CreatedAt)
		if isUniqueViolation(err) {
			return fmt.Errorf("signing key %s: %w", next.KID, store.ErrConflict)
		}
		if err != nil {
			return err
		}
		if err := insertEvent(ctx, tx, ev); err != nil {
			return err
		}
		return s.notify(ctx, tx, store.Change{Kind: store.ChangeSigningKeys})
	})
}

// DeleteSigningKeys implements store.SigningKeyStore.
func (s *Store) DeleteSigningKeys(ctx context.Context, retiredBefore time.Time) (int, error) {
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM signing_keys WHERE NOT active AND retire_at < $1`, retiredBefore)
		if err != nil {
			return err
		}
		if n = tag.RowsAffected(); n > 0 {
			return s.notify(ctx, tx, store.Change{Kind: store.ChangeSigningKeys})
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("delete signing keys: %w", err)
	}
	return int(n), nil
}
