package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/warden-run/warden/internal/store"
)

func insertEvent(ctx context.Context, tx pgx.Tx, ev store.Event) error {
	var detail *string
	if len(ev.Detail) > 0 {
		d := string(ev.Detail)
		detail = &d
	}
	if _, err := tx.Exec(ctx, `INSERT INTO events (time, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)`,
		ev.Time, ev.Actor, ev.Action, ev.Target, detail); err != nil {
		return fmt.Errorf("record event %s: %w", ev.Action, err)
	}
	return nil
}

// RecordEvent implements store.EventStore.
func (s *Store) RecordEvent(ctx context.Context, ev store.Event) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return insertEvent(ctx, tx, ev) })
}

// Events implements store.EventStore.
func (s *Store) Events(ctx context.Context, f store.EventFilter) ([]store.Event, error) {
	where := []string{"seq > $1"}
	args := []any{f.After}
	if f.Target != "" {
		args = append(args, f.Target)
		where = append(where, "target = $2")
	}
	q := `SELECT seq, time, actor, action, target, detail FROM events WHERE ` + strings.Join(where, " AND ") + ` ORDER BY seq`
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	var out []store.Event
	for rows.Next() {
		var (
			ev     store.Event
			detail []byte
		)
		if err := rows.Scan(&ev.Seq, &ev.Time, &ev.Actor, &ev.Action, &ev.Target, &detail); err != nil {
			return nil, err
		}
		ev.Time = ev.Time.UTC()
		ev.Detail = detail
		out = append(out, ev)
	}
	return out, rows.Err()
}
