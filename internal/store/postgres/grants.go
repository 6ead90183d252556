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

// CreateGrant implements store.GrantStore.
func (s *Store) CreateGrant(ctx context.Context, g store.Grant, ev store.Event) error {
	if !g.Status.Valid() {
		return fmt.Errorf("grant %s: status %q", g.ID, g.Status)
	}
	data, err := json.Marshal(g)
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO grants (id, agent_id, task, status, data) VALUES ($1, $2, $3, $4, $5)`,
			g.ID, g.Agent, g.Task, string(g.Status), string(data))
		if isUniqueViolation(err) {
			return fmt.Errorf("grant %s: %w", g.ID, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("write grant: %w", err)
		}
		if ev.Action != "" {
			if err := insertEvent(ctx, tx, ev); err != nil {
				return err
			}
		}
		return s.notify(ctx, tx, store.Change{Kind: store.ChangeGrant, Key: g.Agent})
	})
}

func readGrant(ctx context.Context, db queryRower, q, id string) (store.Grant, error) {
	var data string
	err := db.QueryRow(ctx, q, id).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
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
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		before, err := readGrant(ctx, tx, `SELECT data FROM grants WHERE id = $1 FOR UPDATE`, id)
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
		if _, err := tx.Exec(ctx, `UPDATE grants SET status = $1, data = $2 WHERE id = $3`, string(g.Status), string(data), id); err != nil {
			return fmt.Errorf("write grant: %w", err)
		}
		if ev.Action != "" {
			if err := insertEvent(ctx, tx, ev); err != nil {
				return err
			}
		}
		return s.notify(ctx, tx, store.Change{Kind: store.ChangeGrant, Key: g.Agent})
	})
	return g, err
}

// Grant implements store.GrantStore.
func (s *Store) Grant(ctx context.Context, id string) (store.Grant, error) {
	return readGrant(ctx, s.pool, `SELECT data FROM grants WHERE id = $1`, id)
}

// Grants implements store.GrantStore.
func (s *Store) Grants(ctx context.Context, f store.GrantFilter) ([]store.Grant, error) {
	where, args := []string{"id > $1"}, []any{f.After}
	for _, c := range []struct{ col, val string }{{"agent_id", f.Agent}, {"task", f.Task}, {"status", string(f.Status)}} {
		if c.val != "" {
			args = append(args, c.val)
			where = append(where, fmt.Sprintf("%s = $%d", c.col, len(args)))
		}
	}
	if f.Live {
		where = append(where, "status IN ('pending', 'active')")
	}
	q := `SELECT data FROM grants WHERE ` + strings.Join(where, " AND ") + ` ORDER BY id`
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.pool.Query(ctx, q, args...)
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
