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

// UpdateOpenIncident implements store.IncidentStore.
func (s *Store) UpdateOpenIncident(ctx context.Context, agent string, fn func(*store.Incident, bool) (store.Event, error)) (store.Incident, error) {
	var inc store.Incident
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var data string
		err := tx.QueryRowContext(ctx, `SELECT data FROM incidents WHERE agent_id = ? AND status <> 'resolved'`, agent).Scan(&data)
		fresh := errors.Is(err, sql.ErrNoRows)
		switch {
		case fresh:
			inc = store.NewIncident(agent, store.Now())
		case err != nil:
			return fmt.Errorf("read incident: %w", err)
		default:
			if err := json.Unmarshal([]byte(data), &inc); err != nil {
				return fmt.Errorf("read incident: %w", err)
			}
		}
		return s.writeIncident(ctx, tx, &inc, fresh, func(inc *store.Incident) (store.Event, error) { return fn(inc, fresh) })
	})
	return inc, err
}

// UpdateIncident implements store.IncidentStore.
func (s *Store) UpdateIncident(ctx context.Context, id string, ev store.Event, fn func(*store.Incident) error) (store.Incident, error) {
	var inc store.Incident
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var data string
		err := tx.QueryRowContext(ctx, `SELECT data FROM incidents WHERE id = ?`, id).Scan(&data)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("incident %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("read incident: %w", err)
		}
		if err := json.Unmarshal([]byte(data), &inc); err != nil {
			return fmt.Errorf("read incident: %w", err)
		}
		return s.writeIncident(ctx, tx, &inc, false, func(inc *store.Incident) (store.Event, error) { return ev, fn(inc) })
	})
	return inc, err
}

func (s *Store) writeIncident(ctx context.Context, tx *sql.Tx, inc *store.Incident, fresh bool, fn func(*store.Incident) (store.Event, error)) error {
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
		_, err = tx.ExecContext(ctx, `INSERT INTO incidents (id, agent_id, status, opened_at, updated_at, data) VALUES (?, ?, ?, ?, ?, ?)`,
			inc.ID, inc.AgentID, string(inc.Status), micros(inc.OpenedAt), micros(inc.UpdatedAt), string(data))
		if isConstraint(err) {
			return fmt.Errorf("incident of %s: %w", agent, store.ErrConflict)
		}
	} else {
		_, err = tx.ExecContext(ctx, `UPDATE incidents SET status = ?, updated_at = ?, data = ? WHERE id = ?`,
			string(inc.Status), micros(inc.UpdatedAt), string(data), inc.ID)
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
	var data string
	err := s.r.QueryRowContext(ctx, `SELECT data FROM incidents WHERE id = ?`, id).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Incident{}, fmt.Errorf("incident %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Incident{}, fmt.Errorf("read incident: %w", err)
	}
	var inc store.Incident
	if err := json.Unmarshal([]byte(data), &inc); err != nil {
		return store.Incident{}, fmt.Errorf("read incident: %w", err)
	}
	return inc, nil
}

// Incidents implements store.IncidentStore.
func (s *Store) Incidents(ctx context.Context, f store.IncidentFilter) ([]store.Incident, error) {
	where, args := []string{"id > ?"}, []any{f.After}
	if f.Newest {
		args[0] = ""
	}
	if f.AgentID != "" {
		where, args = append(where, "agent_id = ?"), append(args, f.AgentID)
	}
	if f.Status != "" {
		where, args = append(where, "status = ?"), append(args, string(f.Status))
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
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list incidents: %w", err)
	}
	defer rows.Close()
	out := []store.Incident{}
	for rows.Next() {
		var data string
		if err := rows.Scan(&data); err != nil {
			return nil, err
		}
		var inc store.Incident
		if err := json.Unmarshal([]byte(data), &inc); err != nil {
			return nil, fmt.Errorf("read incident: %w", err)
		}
		out = append(out, inc)
	}
	return out, rows.Err()
}
