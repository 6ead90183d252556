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

// CreateGrant implements store.GrantStore.
func (s *Store) CreateGrant(ctx context.Context, g store.Grant, ev store.Event) error {
	if !g.Status.Valid() {
		return fmt.Errorf("grant %s: status %q", g.ID, g.Status)
	}
	data, err := json.Marshal(g)
	if err != nil {
		return err
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO grants (id, agent_id, task, status, data) VALUES (?, ?, ?, ?, ?)`,
			g.ID, g.Agent, g.Task, string(g.Status), string(data))
		if isConstraint(err) {
			return fmt.Errorf("grant %s: %w", g.ID, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("write grant: %w", err)
		}
		if ev.Action != "" {
			return insertEvent(ctx, tx, ev)
		}
		return nil
	})
	if err == nil {
		s.feed.Publish(store.Change{Kind: store.ChangeGrant, Key: g.Agent})
	}
	return err
}

func readGrant(ctx context.Context, db queryRower, id string) (store.Grant, error) {
	var data string
	err := db.QueryRowContext(ctx, `SELECT data FROM grants WHERE id = ?`, id).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Grant{}, fmt.Errorf("grant %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Grant{}, fmt.Errorf("read grant: %w", err)
	}
	var g store.Grant
	if err := json.Unmarshal([]byte(data), &g); err != nil {
		return store.Grant{}, fmt.Errorf("read grant: %w", err)
	}
	return g, nil
}

// UpdateGrant implements store.GrantStore.
func (s *Store) UpdateGrant(ctx context.Context, id string, fn func(*store.Grant) (store.Event, error)) (store.Grant, error) {
	var g store.Grant
	err := s.tx(ctx, func(tx *sql.Tx) error {
		before, err := readGrant(ctx, tx, id)
		if err != nil {
			return err
		}
		g = before
		ev, err := fn(&g)
		if err != nil {
			return err
		}
		if err := store.CheckGrantUpdate(&before, &g); err != nil {
			return err
		}
		data, err := json.Marshal(g)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE grants SET status = ?, data = ? WHERE id = ?`, string(g.Status), string(data), id); err != nil {
			return fmt.Errorf("write grant: %w", err)
		}
		if ev.Action != "" {
			return insertEvent(ctx, tx, ev)
		}
		return nil
	})
	if err == nil {
		s.feed.Publish(store.Change{Kind: store.ChangeGrant, Key: g.Agent})
	}
	return g, err
}

// Grant implements store.GrantStore.
func (s *Store) Grant(ctx context.Context, id string) (store.Grant, error) {
	return readGrant(ctx, s.r, id)
}

// Grants implements store.GrantStore.
func (s *Store) Grants(ctx context.Context, f store.GrantFilter) ([]store.Grant, error) {
	where, args := []string{"id > ?"}, []any{f.After}
	if f.Agent != "" {
		where, args = append(where, "agent_id = ?"), append(args, f.Agent)
	}
	if f.Task != "" {
		where, args = append(where, "task = ?"), append(args, f.Task)
	}
	if f.Status != "" {
		where, args = append(where, "status = ?"), append(args, string(f.Status))
	}
	if f.Live {
		where = append(where, "status IN ('pending', 'active')")
	}
	q := `SELECT data FROM grants WHERE ` + strings.Join(where, " AND ") + ` ORDER BY id`
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list grants: %w", err)
	}
	defer rows.Close()
	out := []store.Grant{}
	for rows.Next() {
		var data string
		if err := rows.Scan(&data); err != nil {
			return nil, err
		}
		var g store.Grant
		if err := json.Unmarshal([]byte(data), &g); err != nil {
			return nil, fmt.Errorf("read grant: %w", err)
		}
		out = append(out, g)
	}
	return out, rows.Err()
}
