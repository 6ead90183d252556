package sqlite

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

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
	err := s.tx(ctx, func(tx *sql.Tx) error {
		old, err := scanEnforcementPoint(tx.QueryRowContext(ctx, `SELECT `+enforcementPointColumns+` FROM enforcement_points WHERE name = ?`, p.Name))
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("read enforcement point %s: %w", p.Name, err)
		case old.RevokedAt.IsZero():
			return fmt.Errorf("enforcement point %s: %w", p.Name, store.ErrConflict)
		case bytes.Equal(old.CredentialDigest, p.CredentialDigest):
			return fmt.Errorf("enforcement point %s: the credential was revoked: %w", p.Name, store.ErrConflict)
		default:
			if _, err := tx.ExecContext(ctx, `DELETE FROM enforcement_points WHERE name = ?`, p.Name); err != nil {
				return fmt.Errorf("replace enforcement point %s: %w", p.Name, err)
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO enforcement_points (`+enforcementPointColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			p.Name, p.CredentialDigest, p.Description, micros(p.CreatedAt), p.CreatedBy, nullMicros(p.RevokedAt),
			p.Audience, p.NoAudience, strings.Join(p.Trust, ","))
		if isConstraint(err) {
			return fmt.Errorf("enforcement point %s: the credential digest is registered already: %w", p.Name, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("insert enforcement point: %w", err)
		}
		return insertEvent(ctx, tx, ev)
	})
	if err != nil {
		return err
	}
	s.feed.Publish(store.Change{Kind: store.ChangeEnforcementPoints})
	return nil
}

// EnforcementPoints implements store.EnforcementPointStore.
func (s *Store) EnforcementPoints(ctx context.Context) ([]store.EnforcementPoint, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+enforcementPointColumns+` FROM enforcement_points ORDER BY name`)
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
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		p, err = scanEnforcementPoint(tx.QueryRowContext(ctx, `UPDATE enforcement_points SET revoked_at = ?
			WHERE name = ? AND revoked_at IS NULL RETURNING `+enforcementPointColumns, micros(at), name))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("live enforcement point %s: %w", name, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("revoke enforcement point %s: %w", name, err)
		}
		return insertEvent(ctx, tx, ev)
	})
	if err != nil {
		return store.EnforcementPoint{}, err
	}
	s.feed.Publish(store.Change{Kind: store.ChangeEnforcementPoints})
	return p, nil
}

func scanEnforcementPoint(row scanner) (store.EnforcementPoint, error) {
	var (
		p       store.EnforcementPoint
		created int64
		revoked sql.NullInt64
		trust   string
	)
	if err := row.Scan(&p.Name, &p.CredentialDigest, &p.Description, &created, &p.CreatedBy, &revoked, &p.Audience, &p.NoAudience, &trust); err != nil {
		return p, err
	}
	p.CreatedAt, p.RevokedAt, p.Trust = fromMicros(created), fromNullMicros(revoked), splitTrust(trust)
	return p, nil
}

// splitTrust reads the trust column, a comma-separated list.
func splitTrust(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, ",")
}
