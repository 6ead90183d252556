package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

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
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO approvals (id, digest, agent_id, status, expires_at, data) VALUES ($1, $2, $3, $4, $5, $6)`,
			a.ID, a.Digest, a.Agent, string(a.Status), a.ExpiresAt, string(data))
		if isUniqueViolation(err) {
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
	return readApproval(ctx, s.pool, `SELECT data FROM approvals WHERE digest = $1 AND status IN ('pending', 'approved')`, digest)
}

// Approval implements store.ApprovalStore.
func (s *Store) Approval(ctx context.Context, id string) (store.Approval, error) {
	return readApproval(ctx, s.pool, `SELECT data FROM approvals WHERE id = $1`, id)
}

type queryRower interface {
	QueryRow(ctx context.Context, q string, args ...any) pgx.Row
}

func readApproval(ctx context.Context, db queryRower, q, key string) (store.Approval, error) {
	var data string
	err := db.QueryRow(ctx, q, key).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
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
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The row lock makes replicas take turns: a request approved once is
		// consumed once.
		before, err := readApproval(ctx, tx, `SELECT data FROM approvals WHERE id = $1 FOR UPDATE`, id)
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
		_, err = tx.Exec(ctx, `UPDATE approvals SET status = $1, expires_at = $2, data = $3 WHERE id = $4`,
			string(a.Status), a.ExpiresAt, string(data), id)
		if isUniqueViolation(err) {
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
	where, args := []string{"id > $1"}, []any{f.After}
	if f.Newest {
		args[0] = ""
	}
	if f.Agent != "" {
		args = append(args, f.Agent)
		where = append(where, fmt.Sprintf("agent_id = $%d", len(args)))
	}
	if f.Digest != "" {
		args = append(args, f.Digest)
		where = append(where, fmt.Sprintf("digest = $%d", len(args)))
	}
	if f.Status != "" {
		args = append(args, string(f.Status))
		where = append(where, fmt.Sprintf("status = $%d", len(args)))
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
	rows, err := s.pool.Query(ctx, q, args...)
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
