package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/warden-run/warden/internal/store"
)

const taintColumns = `agent_id, task, name, decision_id, audit_index, enforcement_point, action, resource_kind, resource_id, created_at, last_read_at`

// AddTaint implements store.TaintStore.
func (s *Store) AddTaint(ctx context.Context, t store.Taint, renewBefore time.Time) (bool, error) {
	var created bool
	err := s.tx(ctx, func(tx *sql.Tx) error {
		// A taint whose time was up is replaced, as if it were new.
		if _, err := tx.ExecContext(ctx, `DELETE FROM taints WHERE agent_id = ? AND task = ? AND name = ? AND last_read_at < ?`,
			t.AgentID, t.Task, t.Name, micros(renewBefore)); err != nil {
			return fmt.Errorf("renew taint: %w", err)
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO taints (`+taintColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (agent_id, task, name) DO NOTHING`,
			t.AgentID, t.Task, t.Name, t.DecisionID, t.AuditIndex, t.EnforcementPoint, t.Action, t.ResourceKind, t.ResourceID,
			micros(t.CreatedAt), micros(t.LastReadAt))
		if err != nil {
			return fmt.Errorf("add taint: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			created = true
			return nil
		}
		_, err = tx.ExecContext(ctx, `UPDATE taints SET last_read_at = max(last_read_at, ?) WHERE agent_id = ? AND task = ? AND name = ?`,
			micros(t.LastReadAt), t.AgentID, t.Task, t.Name)
		if err != nil {
			return fmt.Errorf("touch taint: %w", err)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	s.feed.Publish(store.Change{Kind: store.ChangeTaint, Key: t.AgentID})
	return created, nil
}

// SetTaintIndex implements store.TaintStore.
func (s *Store) SetTaintIndex(ctx context.Context, t store.Taint, index int64) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE taints SET audit_index = ? WHERE agent_id = ? AND task = ? AND name = ? AND decision_id = ?`,
			index, t.AgentID, t.Task, t.Name, t.DecisionID)
		if err != nil {
			return fmt.Errorf("set taint index: %w", err)
		}
		return nil
	})
}

// Taints implements store.TaintStore.
func (s *Store) Taints(ctx context.Context, agent string) ([]store.Taint, error) {
	q, args := `SELECT `+taintColumns+` FROM taints ORDER BY agent_id, task, name`, []any{}
	if agent != "" {
		q, args = `SELECT `+taintColumns+` FROM taints WHERE agent_id = ? ORDER BY task, name`, []any{agent}
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list taints: %w", err)
	}
	defer rows.Close()
	return scanTaints(rows)
}

// ClearTaints implements store.TaintStore.
func (s *Store) ClearTaints(ctx context.Context, sel store.TaintSelection, ev store.Event) ([]store.Taint, error) {
	q, args := `DELETE FROM taints WHERE agent_id = ? AND task = ? RETURNING `+taintColumns, []any{sel.AgentID, sel.Task}
	if sel.AnyTask {
		q, args = `DELETE FROM taints WHERE agent_id = ? RETURNING `+taintColumns, []any{sel.AgentID}
	}
	var gone []store.Taint
	err := s.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("clear taints: %w", err)
		}
		gone, err = scanTaints(rows)
		rows.Close()
		if err != nil || len(gone) == 0 {
			return err
		}
		return insertEvent(ctx, tx, store.TaintEvent(ev, gone))
	})
	if err != nil {
		return nil, err
	}
	if len(gone) > 0 {
		s.feed.Publish(store.Change{Kind: store.ChangeTaint, Key: sel.AgentID})
	}
	return gone, nil
}

// ExpireTaints implements store.TaintStore.
func (s *Store) ExpireTaints(ctx context.Context, before time.Time, ev store.Event) ([]store.Taint, error) {
	var gone []store.Taint
	err := s.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `DELETE FROM taints WHERE last_read_at < ? RETURNING `+taintColumns, micros(before))
		if err != nil {
			return fmt.Errorf("expire taints: %w", err)
		}
		gone, err = scanTaints(rows)
		rows.Close()
		if err != nil {
			return err
		}
		for _, byAgent := range store.TaintsByAgent(gone) {
			if err := insertEvent(ctx, tx, store.TaintEvent(ev, byAgent)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, byAgent := range store.TaintsByAgent(gone) {
		s.feed.Publish(store.Change{Kind: store.ChangeTaint, Key: byAgent[0].AgentID})
	}
	return gone, nil
}

func scanTaints(rows *sql.Rows) ([]store.Taint, error) {
	var out []store.Taint
	for rows.Next() {
		var (
			t             store.Taint
			created, read int64
		)
		if err := rows.Scan(&t.AgentID, &t.Task, &t.Name, &t.DecisionID, &t.AuditIndex, &t.EnforcementPoint, &t.Action,
			&t.ResourceKind, &t.ResourceID, &created, &read); err != nil {
			return nil, err
		}
		t.CreatedAt, t.LastReadAt = fromMicros(created), fromMicros(read)
		out = append(out, t)
	}
	return out, rows.Err()
}
