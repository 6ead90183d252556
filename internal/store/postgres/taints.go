package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/warden-run/warden/internal/store"
)

const taintColumns = `agent_id, task, name, decision_id, audit_index, enforcement_point, action, resource_kind, resource_id, created_at, last_read_at`

// AddTaint implements store.TaintStore.
func (s *Store) AddTaint(ctx context.Context, t store.Taint, renewBefore time.Time) (bool, error) {
	var created bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// A taint whose time was up is replaced, as if it were new.
		if _, err := tx.Exec(ctx, `DELETE FROM taints WHERE agent_id = $1 AND task = $2 AND name = $3 AND last_read_at < $4`,
			t.AgentID, t.Task, t.Name, renewBefore); err != nil {
			return fmt.Errorf("renew taint: %w", err)
		}
		// xmax is 0 for a row this statement inserted.
		err := tx.QueryRow(ctx, `INSERT INTO taints (`+taintColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			ON CONFLICT (agent_id, task, name) DO UPDATE SET last_read_at = greatest(taints.last_read_at, excluded.last_read_at)
			RETURNING xmax = 0`,
			t.AgentID, t.Task, t.Name, t.DecisionID, t.AuditIndex, t.EnforcementPoint, t.Action, t.ResourceKind, t.ResourceID,
			t.CreatedAt, t.LastReadAt).Scan(&created)
		if err != nil {
			return fmt.Errorf("add taint: %w", err)
		}
		return s.notify(ctx, tx, store.Change{Kind: store.ChangeTaint, Key: t.AgentID})
	})
	return created, err
}

// SetTaintIndex implements store.TaintStore.
func (s *Store) SetTaintIndex(ctx context.Context, t store.Taint, index int64) error {
	_, err := s.pool.Exec(ctx, `UPDATE taints SET audit_index = $1 WHERE agent_id = $2 AND task = $3 AND name = $4 AND decision_id = $5`,
		index, t.AgentID, t.Task, t.Name, t.DecisionID)
	if err != nil {
		return fmt.Errorf("set taint index: %w", err)
	}
	return nil
}

// Taints implements store.TaintStore.
func (s *Store) Taints(ctx context.Context, agent string) ([]store.Taint, error) {
	q, args := `SELECT `+taintColumns+` FROM taints ORDER BY agent_id, task, name`, []any{}
	if agent != "" {
		q, args = `SELECT `+taintColumns+` FROM taints WHERE agent_id = $1 ORDER BY task, name`, []any{agent}
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list taints: %w", err)
	}
	return scanTaints(rows)
}

// ClearTaints implements store.TaintStore.
func (s *Store) ClearTaints(ctx context.Context, sel store.TaintSelection, ev store.Event) ([]store.Taint, error) {
	q, args := `DELETE FROM taints WHERE agent_id = $1 AND task = $2 RETURNING `+taintColumns, []any{sel.AgentID, sel.Task}
	if sel.AnyTask {
		q, args = `DELETE FROM taints WHERE agent_id = $1 RETURNING `+taintColumns, []any{sel.AgentID}
	}
	var gone []store.Taint
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("clear taints: %w", err)
		}
		if gone, err = scanTaints(rows); err != nil || len(gone) == 0 {
			return err
		}
		if err := insertEvent(ctx, tx, store.TaintEvent(ev, gone)); err != nil {
			return err
		}
		return s.notify(ctx, tx, store.Change{Kind: store.ChangeTaint, Key: sel.AgentID})
	})
	if err != nil {
		return nil, err
	}
	return gone, nil
}

// ExpireTaints implements store.TaintStore. Replicas expiring at once
// remove each taint once: the rows are locked by the first DELETE.
func (s *Store) ExpireTaints(ctx context.Context, before time.Time, ev store.Event) ([]store.Taint, error) {
	var gone []store.Taint
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `DELETE FROM taints WHERE last_read_at < $1 RETURNING `+taintColumns, before)
		if err != nil {
			return fmt.Errorf("expire taints: %w", err)
		}
		if gone, err = scanTaints(rows); err != nil {
			return err
		}
		for _, byAgent := range store.TaintsByAgent(gone) {
			if err := insertEvent(ctx, tx, store.TaintEvent(ev, byAgent)); err != nil {
				return err
			}
			if err := s.notify(ctx, tx, store.Change{Kind: store.ChangeTaint, Key: byAgent[0].AgentID}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return gone, nil
}

func scanTaints(rows pgx.Rows) ([]store.Taint, error) {
	defer rows.Close()
	var out []store.Taint
	for rows.Next() {
		var t store.Taint
		if err := rows.Scan(&t.AgentID, &t.Task, &t.Name, &t.DecisionID, &t.AuditIndex, &t.EnforcementPoint, &t.Action,
			&t.ResourceKind, &t.ResourceID, &t.CreatedAt, &t.LastReadAt); err != nil {
			return nil, err
		}
		t.CreatedAt, t.LastReadAt = t.CreatedAt.UTC(), t.LastReadAt.UTC()
		out = append(out, t)
	}
	return out, rows.Err()
}
