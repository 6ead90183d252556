package postgres

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/warden-run/warden/internal/store"
)

const enforcementPointColumns = `name, credential_digest, description, created_at, created_by, revoked_at, audience, no_audience, trust`

// RegisterEnforcementPoint implements store.EnforcementPointStore. A revoked
// point's credential is refused also to the point that replaces it: a
// revoked credential is never accepted again.
func (s *Store) RegisterEnforcementPoint(ctx context.Context, p store.EnforcementPoint, ev store.Event) error {
	if len(p.CredentialDigest) != sha256.Size {
		return fmt.Errorf("enforcement point %s: a credential digest of %d bytes, want a SHA-256", p.Name, len(p.CredentialDigest))
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// A concurrent registration of the same name waits here for this one,
		// then finds no row (this one replaced it) and fails on the name.
		old, err := scanEnforcementPoint(tx.QueryRow(ctx, `SELECT `+enforcementPointColumns+` FROM enforcement_points
			WHERE name = $1 FOR UPDATE`, p.Name))
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return fmt.Errorf("read enforcement point %s: %w", p.Name, err)
		case old.RevokedAt.IsZero():
			return fmt.Errorf("enforcement point %s: %w", p.Name, store.ErrConflict)
		case bytes.Equal(old.CredentialDigest, p.CredentialDigest):
			return fmt.Errorf("enforcement point %s: the credential was revoked: %w", p.Name, store.ErrConflict)
		default:
			if _, err := tx.Exec(ctx, `DELETE FROM enforcement_points WHERE name = $1`, p.Name); err != nil {
				return fmt.Errorf("replace enforcement point %s: %w", p.Name, err)
			}
		}
		_, err = tx.Exec(ctx, `INSERT INTO enforcement_points (`+enforcementPointColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			p.Name, p.CredentialDigest, p.Description, p.CreatedAt, p.CreatedBy, nullTime(p.RevokedAt),
			p.Audience, p.NoAudience, strings.Join(p.Trust, ","))
		if isUniqueViolation(err) {
			return fmt.Errorf("enforcement point %s: the name or the credential digest is registered already: %w", p.Name, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("insert enforcement point: %w", err)
		}
		if err := insertEvent(ctx, tx, ev); err != nil {
			return err
		}
		return s.notify(ctx, tx, store.Change{Kind: store.ChangeEnforcementPoints})
	})
}

// EnforcementPoints implements store.EnforcementPointStore.
func (s *Store) EnforcementPoints(ctx context.Context) ([]store.EnforcementPoint, error) {
	// names are COLLATE "C" (see the migration): the same byte order as SQLite.
	rows, err := s.pool.Query(ctx, `SELECT `+enforcementPointColumns+` FROM enforcement_points ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list enforcement points: %w", err)
	}
	defer rows.Close()
	var out []store.EnforcementPoint
	for rows.Next() {
		p, err := scanEnforcementPoint(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// RevokeEnforcementPoint implements store.EnforcementPointStore.
func (s *Store) RevokeEnforcementPoint(ctx context.Context, name string, at time.Time, ev store.Event) (store.EnforcementPoint, error) {
	if at.IsZero() {
		return store.EnforcementPoint{}, fmt.Errorf("revoke enforcement point %s: no revocation time", name)
	}
	var p store.EnforcementPoint
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		p, err = scanEnforcementPoint(tx.QueryRow(ctx, `UPDATE enforcement_points SET revoked_at = $1
			WHERE name = $2 AND revoked_at IS NULL RETURNING `+enforcementPointColumns, at, name))
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("live enforcement point %s: %w", name, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("revoke enforcement point %s: %w", name, err)
		}
		if err := insertEvent(ctx, tx, ev); err != nil {
			return err
		}
		return s.notify(ctx, tx, store.Change{Kind: store.ChangeEnforcementPoints})
	})
	if err != nil {
		return store.EnforcementPoint{}, err
	}
	return p, nil
}

func scanEnforcementPoint(row pgx.Row) (store.EnforcementPoint, error) {
	var (
		p       store.EnforcementPoint
		revoked *time.Time
		trust   string
	)
	if err := row.Scan(&p.Name, &p.CredentialDigest, &p.Description, &p.CreatedAt, &p.CreatedBy, &revoked, &p.Audience, &p.NoAudience, &trust); err != nil {
		return p, err
	}
	p.CreatedAt, p.RevokedAt, p.Trust = p.CreatedAt.UTC(), fromNullTime(revoked), splitTrust(trust)
	return p, nil
}

// splitTrust reads the trust column, a comma-separated list.
func splitTrust(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, ",")
}
