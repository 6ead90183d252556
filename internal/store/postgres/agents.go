package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/warden-run/warden/internal/store"
)

const agentColumns = `id, trust_domain, roles, owner, attributes, status, keys, tokens_revoked_at, created_at, updated_at`

// CreateAgent implements store.AgentStore.
func (s *Store) CreateAgent(ctx context.Context, a store.Agent, ev store.Event) error {
	roles, attrs, keys, err := encodeAgent(a)
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO agents (`+agentColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			a.ID, a.TrustDomain, roles, a.Owner, attrs, string(a.Status), keys,
			nullTime(a.TokensRevokedAt), a.CreatedAt, a.UpdatedAt)
		if isUniqueViolation(err) {
			return fmt.Errorf("agent %s: %w", a.ID, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("insert agent: %w", err)
		}
		if err := indexKeys(ctx, tx, a.ID, store.NewKeyIDs(store.Agent{}, a)); err != nil {
			return err
		}
		if err := insertEvent(ctx, tx, ev); err != nil {
			return err
		}
		return s.notify(ctx, tx, store.Change{Kind: store.ChangeAgent, Key: a.ID})
	})
}

// Agent implements store.AgentStore.
func (s *Store) Agent(ctx context.Context, id string) (store.Agent, error) {
	a, err := scanAgent(s.pool.QueryRow(ctx, `SELECT `+agentColumns+` FROM agents WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Agent{}, fmt.Errorf("agent %s: %w", id, store.ErrNotFound)
	}
	return a, err
}

// Agents implements store.AgentStore.
func (s *Store) Agents(ctx context.Context, f store.AgentFilter) ([]store.Agent, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.TrustDomain != "" {
		add("trust_domain = $%d", f.TrustDomain)
	}
	if f.Status != "" {
		add("status = $%d", string(f.Status))
	}
	if f.After != "" {
		add("id > $%d", f.After)
	}
	q := `SELECT ` + agentColumns + ` FROM agents`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	// ids are COLLATE "C" (see the migration): the same byte order as SQLite.
	q += ` ORDER BY id`
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.pool.Query(ctx, q, args...)
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
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		a, err = scanAgent(tx.QueryRow(ctx, `SELECT `+agentColumns+` FROM agents WHERE id = $1 FOR UPDATE`, id))
		if errors.Is(err, pgx.ErrNoRows) {
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
		if _, err := tx.Exec(ctx, `UPDATE agents SET roles = $1, owner = $2, attributes = $3, status = $4, keys = $5,
			tokens_revoked_at = $6, updated_at = $7 WHERE id = $8`,
			roles, a.Owner, attrs, string(a.Status), keys, nullTime(a.TokensRevokedAt), a.UpdatedAt, id); err != nil {
			return fmt.Errorf("update agent: %w", err)
		}
		if err := indexKeys(ctx, tx, id, store.NewKeyIDs(before, a)); err != nil {
			return err
		}
		if err := insertEvent(ctx, tx, ev); err != nil {
			return err
		}
		return s.notify(ctx, tx, store.Change{Kind: store.ChangeAgent, Key: id})
	})
	if err != nil {
		return store.Agent{}, err
	}
	return a, nil
}

// indexKeys records that the keys with these kids belong to agent. A kid
// recorded before, for any agent, is a conflict: a key is never given out
// twice, not even after it has been retired and forgotten.
func indexKeys(ctx context.Context, tx pgx.Tx, agent string, kids []string) error {
	for _, kid := range kids {
		_, err := tx.Exec(ctx, `INSERT INTO agent_keys (kid, agent_id) VALUES ($1, $2)`, kid, agent)
		if isUniqueViolation(err) {
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

func scanAgent(row pgx.Row) (store.Agent, error) {
	var (
		a                  store.Agent
		roles, attrs, keys []byte
		status             string
		revoked            *time.Time
	)
	if err := row.Scan(&a.ID, &a.TrustDomain, &roles, &a.Owner, &attrs, &status, &keys, &revoked, &a.CreatedAt, &a.UpdatedAt); err != nil {
		return a, err
	}
	a.Status = store.AgentStatus(status)
	a.TokensRevokedAt = fromNullTime(revoked)
	a.CreatedAt, a.UpdatedAt = a.CreatedAt.UTC(), a.UpdatedAt.UTC()
	if err := errors.Join(json.Unmarshal(roles, &a.Roles), json.Unmarshal(attrs, &a.Attributes),
		json.Unmarshal(keys, &a.Keys)); err != nil {
		return a, fmt.Errorf("decode agent %s: %w", a.ID, err)
	}
	return a, nil
}
