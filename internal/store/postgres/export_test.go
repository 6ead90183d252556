package postgres

import (
	"context"

	"github.com/warden-run/warden/internal/audit"
)

// ChannelOf exposes the notification channel to tests.
func ChannelOf(s *Store) string { return s.channel }

// InsertRawAuditEntry writes an entry row directly, as a tamperer with
// database access could, and moves the head past it.
func InsertRawAuditEntry(ctx context.Context, s *Store, idx int64, data []byte) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO audit_entries (idx, time, kind, data, leaf) VALUES ($1, now(), 'admin', $2, $3)`,
		idx, data, audit.LeafHash(data))
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `UPDATE audit_head SET size = $1 + 1, last_leaf = $2 WHERE id = 1`, idx, audit.LeafHash(data))
	return err
}

// AuditLockName exposes the lead lock's name to tests.
func AuditLockName(s *Store) string { return (&AuditLog{s: s}).lockName() }
