package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/warden-run/warden/internal/store"
)

// CreateApproval implements store.ApprovalStore.
func (s *Store) CreateApproval(ctx context.Context, a store.Approval, ev store.Event) error {
	if !a.Status.Valid() {
		return fmt.Errorf("approval %s: status %q", a.ID, a.Status)
	}
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO approvals (id, digest, agent_id, status, expires_at, data) VALUES (?, ?, ?, ?, ?, ?)`,
			a.ID, a.Digest, a.Agent, string(a.Status), micros(a.ExpiresAt), string(data))
		if isConstraint(err) {
			return fmt.Errorf("approval for %s: %w", a.Digest, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("write approval: %w", err)
		}
		if ev.Action != "" {
			return insertEvent(ctx, tx, ev)
		}
		return nil
	})
}

// LiveApproval implements store.ApprovalStore.
func (s *Store) LiveApproval(ctx context.Context, digest string) (store.Approval, error) {
	return s.readApproval(ctx, s.r, `SELECT data FROM approvals WHERE digest = ? AND status IN ('pending', 'approved')`, digest)
}

// Approval implements store.ApprovalStore.
func (s *Store) Approval(ctx context.Context, id string) (store.Approval, error) {
	return s.readApproval(ctx, s.r, `SELECT data FROM approvals WHERE id = ?`, id)
}

type queryRower interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

func (s *Store) readApproval(ctx context.Context, db queryRower, q, key string) (store.Approval, error) {
	var data string
	err := db.QueryRowContext(ctx, q, key).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Approval{}, fmt.Errorf("approval %s: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return store.Approval{}, fmt.Errorf("read approval: %w", err)
	}
	var a store.Approval
	if err := json.Unmarshal([]byte(data), &a); err != nil {
		return store.Approval{}, fmt.Errorf("read approval: %w", err)
	}
	return a, nil
}

// UpdateApproval implements store.ApprovalStore.
func (s *Store) UpdateApproval(ctx context.Context, id string, fn func(*store.Approval) (store.Event, error)) (store.Approval, error) {
	var a store.Approval
	err := s.tx(ctx, func(tx *sql.Tx) error {
		before, err := s.readApproval(ctx, tx, `SELECT data FROM approvals WHERE id = ?`, id)
		if err != nil {
			return err
		}
		a = before
		a.Votes = append([]store.ApprovalVote(nil), before.Votes...)
		ev, err := fn(&a)
		if err != nil {
			return err
		}
		if err := store.CheckApprovalUpdate(&before, &a); err != nil {
			return err
		}
		data, err := json.Marshal(a)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE approvals SET status = ?, expires_at = ?, data = ? WHERE id = ?`,
			string(a.Status), micros(a.ExpiresAt), string(data), id)
		if isConstraint(err) {
			return fmt.Errorf("approval %s: %w", id, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("write approval: %w", err)
		}
		if ev.Action != "" {
			return insertEvent(ctx, tx, ev)
		}
		return nil
	})
	return a, err
}

// Approvals implements store.ApprovalStore.
func (s *Store) Approvals(ctx context.Context, f store.ApprovalFilter) ([]store.Approval, error) {
	where, args := []string{"id > ?"}, []any{f.After}
	if f.Newest {
		args[0] = ""
	}
	if f.Agent != "" {
		where, args = append(where, "agent_id = ?"), append(args, f.Agent)
	}
	if f.Digest != "" {
		where, args = append(where, "digest = ?"), append(args, f.Digest)
	}
	if f.Status != "" {
		where, args = append(where, "status = ?"), append(args, string(f.Status))
	}
	if f.Live {
		where = append(where, "status IN ('pending', 'approved')")
	}
	q := `SELECT data FROM approvals WHERE ` + strings.Join(where, " AND ") + ` ORDER BY id`
	if f.Newest {
		q += " DESC"
	}
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list approvals: %w", err)
	}
	defer rows.Close()
	out := []store.Approval{}
	for rows.Next() {
		var data string
		if err := rows.Scan(&data); err != nil {
			return nil, err
		}
		var a store.Approval
		if err := json.Unmarshal([]byte(data), &a); err != nil {
			return nil, fmt.Errorf("read approval: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}
