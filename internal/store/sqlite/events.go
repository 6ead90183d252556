package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/warden-run/warden/internal/store"
)

func insertEvent(ctx context.Context, tx *sql.Tx, ev store.Event) error {
	var detail sql.NullString
	if len(ev.Detail) > 0 {
		detail = sql.NullString{String: string(ev.Detail), Valid: true}
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO events (time, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)`,
		micros(ev.Time), ev.Actor, ev.Action, ev.Target, detail)
	if err != nil {
		return fmt.Errorf("record event %s: %w", ev.Action, err)
	}
	return nil
}

// RecordEvent implements store.EventStore.
func (s *Store) RecordEvent(ctx context.Context, ev store.Event) error {
	return s.tx(ctx, func(tx *sql.Tx) error { return insertEvent(ctx, tx, ev) })
}

// Events implements store.EventStore.
func (s *Store) Events(ctx context.Context, f store.EventFilter) ([]store.Event, error) {
	where := []string{"seq > ?"}
	args := []any{f.After}
	if f.Target != "" {
		where, args = append(where, "target = ?"), append(args, f.Target)
	}
	q := `SELECT seq, time, actor, action, target, detail FROM events WHERE ` + strings.Join(where, " AND ") + ` ORDER BY seq`
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	var out []store.Event
	for rows.Next() {
		var (
			ev     store.Event
			t      int64
			detail sql.NullString
		)
		if err := rows.Scan(&ev.Seq, &t, &ev.Actor, &ev.Action, &ev.Target, &detail); err != nil {
			return nil, err
		}
		ev.Time = fromMicros(t)
		if detail.Valid {
			ev.Detail = []byte(detail.String)
		}
		out = append(out, ev)
	}
	return out, rows.Err()
}
