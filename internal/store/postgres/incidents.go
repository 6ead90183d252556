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

// UpdateOpenIncident implements store.IncidentStore.
func (s *Store) UpdateOpenIncident(ctx context.Context, agent string, fn func(*store.Incident, bool) (store.Event, error)) (store.Incident, error) {
	var inc store.Incident
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var data []byte
		err := tx.QueryRow(ctx, `SELECT data FROM incidents WHERE agent_id = $1 AND status <> 'resolved' FOR UPDATE`, agent).Scan(&data)
		fresh := errors.Is(err, pgx.ErrNoRows)
		switch {
		case fresh:
			inc = store.NewIncident(agent, store.Now())
		case err != nil:
			return fmt.Errorf("read incident: %w", err)
		default:
			if err := json.Unmarshal(data, &inc); err != nil {
				return fmt.Errorf("read incident: %w", err)
			}
		}
		return writeIncident(ctx, tx, &inc, fresh, func(inc *store.Incident) (store.Event, error) { return fn(inc, fresh) })
	})
	return inc, err
}

// UpdateIncident implements store.IncidentStore.
func (s *Store) UpdateIncident(ctx context.Context, id string, ev store.Event, fn func(*store.Incident) error) (store.Incident, error) {
	var inc store.Incident
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var data []byte
		err := tx.QueryRow(ctx, `SELECT data FROM incidents WHERE id = $1 FOR UPDATE`, id).Scan(&data)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("incident %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("read incident: %w", err)
		}
		if err := json.Unmarshal(data, &inc); err != nil {
			return fmt.Errorf("read incident: %w", err)
		}
		return writeIncident(ctx, tx, &inc, false, func(inc *store.Incident) (store.Event, error) { return ev, fn(inc) })
	})
	return inc, err
}

func writeIncident(ctx context.Context, tx pgx.Tx, inc *store.Incident, fresh bool, fn func(*store.Incident) (store.Event, error)) error {
	id, agent := inc.ID, inc.AgentID
	ev, err := fn(inc)
	if err != nil {
		return err
	}
	if err := store.CheckIncidentUpdate(id, agent, inc); err != nil {
		return err
	}
	data, err := json.Marshal(inc)
	if err != nil {
		return err
	}
	if fresh {
		_, err = tx.Exec(ctx, `INSERT INTO incidents (id, agent_id, status, opened_at, updated_at, data) VALUES ($1, $2, $3, $4, $5, $6)`,
			inc.ID, inc.AgentID, string(inc.Status), inc.OpenedAt, inc.UpdatedAt, data)
		if isUniqueViolation(err) {
			return fmt.Errorf("incident of %s: %w", agent, store.ErrConflict)
		}
	} else {
		_, err = tx.Exec(ctx, `UPDATE incidents SET status = $1, updated_at = $2, data = $3 WHERE id = $4`,
			string(inc.Status), inc.UpdatedAt, data, inc.ID)
	}
	if err != nil {
		return fmt.Errorf("write incident: %w", err)
	}
	if ev.Action != "" {
		return insertEvent(ctx, tx, ev)
	}
	return nil
}

// Incident implements store.IncidentStore.
func (s *Store) Incident(ctx context.Context, id string) (store.Incident, error) {
	var data []byte
	err := s.pool.QueryRow(ctx, `SELECT data FROM incidents WHERE id = $1`, id).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Incident{}, fmt.Errorf("incident %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Incident{}, fmt.Errorf("read incident: %w", err)
	}
	var inc store.Incident
	if err := json.Unmarshal(data, &inc); err != nil {
		return store.Incident{}, fmt.Errorf("read incident: %w", err)
	}
	return inc, nil
}

// Incidents implements store.IncidentStore.
func (s *Store) Incidents(ctx context.Context, f store.IncidentFilter) ([]store.Incident, error) {
	where, args := []string{"id > $1"}, []any{f.After}
	if f.Newest {
		args[0] = ""
	}
	if f.AgentID != "" {
		args = append(args, f.AgentID)
		where = append(where, fmt.Sprintf("agent_id = $%d", len(args)))
	}
	if f.Status != "" {
		args = append(args, string(f.Status))
		where = append(where, fmt.Sprintf("status = $%d", len(args)))
	}
	if f.Open {
		where = append(where, "status <> 'resolved'")
	}
	q := `SELECT data FROM incidents WHERE ` + strings.Join(where, " AND ") + ` ORDER BY id`
	if f.Newest {
		q += " DESC"
	}
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list incidents: %w", err)
	}
	defer rows.Close()
	out := []store.Incident{}
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return nil, err
		}
		var inc store.Incident
		if err := json.Unmarshal(data, &inc); err != nil {
			return nil, fmt.Errorf("read incident: %w", err)
		}
		out = append(out, inc)
	}
	return out, rows.Err()
}
