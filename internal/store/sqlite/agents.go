package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/warden-run/warden/internal/store"
)

const agentColumns = `id, trust_domain, roles, owner, attributes, status, keys, tokens_revoked_at, created_at, updated_at`

// CreateAgent implements store.AgentStore.
func (s *Store) CreateAgent(ctx context.Context, a store.Agent, ev store.Event) error {
	roles, attrs, keys, err := encodeAgent(a)
	if err != nil {
		return err
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO agents (`+agentColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			a.ID, a.TrustDomain, roles, a.Owner, attrs, string(a.Status), keys,
			nullMicros(a.TokensRevokedAt), micros(a.CreatedAt), micros(a.UpdatedAt))
		if isConstraint(err) {
			return fmt.Errorf("agent %s: %w", a.ID, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("insert agent: %w", err)
		}
		if err := indexKeys(ctx, tx, a.ID, store.NewKeyIDs(store.Agent{}, a)); err != nil {
			return err
		}
		return insertEvent(ctx, tx, ev)
	})
	if err != nil {
		return err
	}
	s.feed.Publish(store.Change{Kind: store.ChangeAgent, Key: a.ID})
	return nil
}

// Agent implements store.AgentStore.
func (s *Store) Agent(ctx context.Context, id string) (store.Agent, error) {
	a, err := scanAgent(s.r.QueryRowContext(ctx, `SELECT `+agentColumns+` FROM agents WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Agent{}, fmt.Errorf("agent %s: %w", id, store.ErrNotFound)
	}
	return a, err
}

// Agents implements store.AgentStore.
func (s *Store) Agents(ctx context.Context, f store.AgentFilter) ([]store.Agent, error) {
	var where []string
	var args []any
	if f.TrustDomain != "" {
		where, args = append(where, "trust_domain = ?"), append(args, f.TrustDomain)
	}
	if f.Status != "" {
		where, args = append(where, "status = ?"), append(args, string(f.Status))
	}
	if f.After != "" {
		where, args = append(where, "id > ?"), append(args, f.After)
	}
	q := `SELECT ` + agentColumns + ` FROM agents`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	defer rows.Close()
	var out []store.Agent
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// UpdateAgent implements store.AgentStore.
func (s *Store) UpdateAgent(ctx context.Context, id string, ev store.Event, fn func(*store.Agent) error) (store.Agent, error) {
	var a store.Agent
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		a, err = scanAgent(tx.QueryRowContext(ctx, `SELECT `+agentColumns+` FROM agents WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("agent %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		before := a
		before.Keys = slices.Clone(a.Keys)
		if err := fn(&a); err != nil {
			return err
		}
		if a.ID != id {
			return fmt.Errorf("update agent %s: the id cannot change", id)
		}
		roles, attrs, keys, err := encodeAgent(a)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE agents SET roles = ?, owner = ?, attributes = ?, status = ?, keys = ?,
			tokens_revoked_at = ?, updated_at = ? WHERE id = ?`,
			roles, a.Owner, attrs, string(a.Status), keys, nullMicros(a.TokensRevokedAt), micros(a.UpdatedAt), id)
		if err != nil {
			return fmt.Errorf("update agent: %w", err)
		}
		if err := indexKeys(ctx, tx, id, store.NewKeyIDs(before, a)); err != nil {
			return err
		}
		return insertEvent(ctx, tx, ev)
	})
	if err != nil {
		return store.Agent{}, err
	}
	s.feed.Publish(store.Change{Kind: store.ChangeAgent, Key: id})
	return a, nil
}

// indexKeys records that the keys with these kids belong to agent. A kid
// recorded before, for any agent, is a conflict: a key is never given out
// twice, not even after it has been retired and forgotten.
func indexKeys(ctx context.Context, tx *sql.Tx, agent string, kids []string) error {
	for _, kid := range kids {
		_, err := tx.ExecContext(ctx, `INSERT INTO agent_keys (kid, agent_id) VALUES (?, ?)`, kid, agent)
		if isConstraint(err) {
			return fmt.Errorf("key %s has been registered before: %w", kid, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("index agent keys: %w", err)
		}
	}
	return nil
}

func encodeAgent(a store.Agent) (roles, attrs, keys string, err error) {
	if a.Roles == nil {
		a.Roles = []string{}
	}
	if a.Attributes == nil {
		a.Attributes = map[string]string{}
	}
	if a.Keys == nil {
		a.Keys = []store.AgentKey{}
	}
	r, err1 := json.Marshal(a.Roles)
	at, err2 := json.Marshal(a.Attributes)
	k, err3 := json.Marshal(a.Keys)
	if err := errors.Join(err1, err2, err3); err != nil {
		return "", "", "", fmt.Errorf("encode agent %s: %w", a.ID, err)
	}
	return string(r), string(at), string(k), nil
}

type scanner interface{ Scan(dest ...any) error }

func scanAgent(row scanner) (store.Agent, error) {
	var (
		a                  store.Agent
		roles, attrs, keys string
		status             string
		revoked            sql.NullInt64
		created, updated   int64
	)
	if err := row.Scan(&a.ID, &a.TrustDomain, &roles, &a.Owner, &attrs, &status, &keys, &revoked, &created, &updated); err != nil {
		return a, err
	}
	a.Status = store.AgentStatus(status)
	a.TokensRevokedAt = fromNullMicros(revoked)
	a.CreatedAt, a.UpdatedAt = fromMicros(created), fromMicros(updated)
	if err := errors.Join(json.Unmarshal([]byte(roles), &a.Roles), json.Unmarshal([]byte(attrs), &a.Attributes),
		json.Unmarshal([]byte(keys), &a.Keys)); err != nil {
		return a, fmt.Errorf("decode agent %s: %w", a.ID, err)
	}
	return a, nil
}
