package pglog

import (
	"context"

	"github.com/warden-run/warden/internal/audit"
)

// InsertRawEntry writes an entry row directly, as a tamperer with database
// access could, and moves the head past it.
func InsertRawEntry(ctx context.Context, l *Log, idx int64, data []byte) error {
	_, err := l.pool.Exec(ctx, `INSERT INTO audit_entries (idx, time, kind, data, leaf) VALUES ($1, now(), 'admin', $2, $3)`,
		idx, data, audit.LeafHash(data))
	if err != nil {
		return err
	}
	_, err = l.pool.Exec(ctx, `UPDATE audit_head SET size = $1 + 1, last_leaf = $2 WHERE id = 1`, idx, audit.LeafHash(data))
	return err
}

// LockName exposes the lead lock's name to tests.
func LockName(l *Log) string { return l.lockName }
