package postgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/warden-run/warden/internal/store"
)

const policyVersionColumns = `id, parent, author, message, created_at, tests`

const policyActivationColumns = `seq, version, kind, actor, time, coalesce(undo, 0)`

// policyStateQuery reads the live versions: the state row and the
// activation it points to, zero values before any activation. Writers lock
// the state row first (lockPolicyState) and read it with a later statement,
// which sees what the transaction they waited for committed.
const policyStateQuery = `SELECT coalesce(s.shadow, ''), coalesce(a.seq, 0), coalesce(a.version, ''),
	coalesce(a.kind, ''), coalesce(a.actor, ''), a.time, coalesce(a.undo, 0)
	FROM policy_state s LEFT JOIN policy_activations a ON a.seq = s.activation WHERE s.id = 1`

// AddPolicyVersion implements store.PolicyStore.
func (s *Store) AddPolicyVersion(ctx context.Context, v store.PolicyVersion, ev store.Event) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var tests []byte
		if len(v.Tests) > 0 {
			tests = v.Tests
		}
		_, err := tx.Exec(ctx, `INSERT INTO policy_versions (`+policyVersionColumns+`) VALUES ($1, $2, $3, $4, $5, $6)`,
			v.ID, v.Parent, v.Author, v.Message, v.CreatedAt, tests)
		if isUniqueViolation(err) {
			return fmt.Errorf("policy version %s: %w", v.ID, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("insert policy version: %w", err)
		}
		rows := make([][]any, 0, len(v.Files))
		for _, path := range slices.Sorted(maps.Keys(v.Files)) {
			content := v.Files[path]
			if content == nil {
				content = []byte{}
			}
			rows = append(rows, []any{v.ID, path, content})
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"policy_files"}, []string{"version", "path", "content"},
			pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("insert policy files: %w", err)
		}
		return insertEvent(ctx, tx, ev)
	})
}

// PolicyVersion implements store.PolicyStore.
func (s *Store) PolicyVersion(ctx context.Context, id string) (store.PolicyVersion, error) {
	v, err := scanPolicyVersion(s.pool.QueryRow(ctx, `SELECT `+policyVersionColumns+` FROM policy_versions WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.PolicyVersion{}, fmt.Errorf("policy version %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.PolicyVersion{}, fmt.Errorf("read policy version %s: %w", id, err)
	}
	// A version and its files are stored in one transaction and never change:
	// once the version is visible, so are all of its files.
	rows, err := s.pool.Query(ctx, `SELECT path, content FROM policy_files WHERE version = $1`, id)
	if err != nil {
		return store.PolicyVersion{}, fmt.Errorf("read policy files of %s: %w", id, err)
	}
	defer rows.Close()
	v.Files = make(map[string][]byte)
	for rows.Next() {
		var (
			path    string
			content []byte
		)
		if err := rows.Scan(&path, &content); err != nil {
			return store.PolicyVersion{}, err
		}
		if content == nil {
			content = []byte{}
		}
		v.Files[path] = content
	}
	if err := rows.Err(); err != nil {
		return store.PolicyVersion{}, fmt.Errorf("read policy files of %s: %w", id, err)
	}
	return v, nil
}

// PolicyVersions implements store.PolicyStore. Versions created at the same
// time are ordered by when they were stored, the later first.
func (s *Store) PolicyVersions(ctx context.Context, before string, limit int) ([]store.PolicyVersion, error) {
	q := `SELECT ` + policyVersionColumns + ` FROM policy_versions`
	var args []any
	if before != "" {
		var (
			created time.Time
			seq     int64
		)
		err := s.pool.QueryRow(ctx, `SELECT created_at, seq FROM policy_versions WHERE id = $1`, before).Scan(&created, &seq)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("policy version %s: %w", before, store.ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("list policy versions: %w", err)
		}
		q += ` WHERE (created_at, seq) < ($1, $2)`
		args = append(args, created, seq)
	}
	q += ` ORDER BY created_at DESC, seq DESC`
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list policy versions: %w", err)
	}
	defer rows.Close()
	var out []store.PolicyVersion
	for rows.Next() {
		v, err := scanPolicyVersion(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// PolicyState implements store.PolicyStore.
func (s *Store) PolicyState(ctx context.Context) (store.PolicyState, error) {
	st, err := scanPolicyState(s.pool.QueryRow(ctx, policyStateQuery))
	if err != nil {
		return store.PolicyState{}, fmt.Errorf("read policy state: %w", err)
	}
	return st, nil
}

// ActivatePolicy implements store.PolicyStore.
func (s *Store) ActivatePolicy(ctx context.Context, id, expect string, at time.Time, actor string, ev store.Event) (store.PolicyState, error) {
	var st store.PolicyState
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockPolicyState(ctx, tx); err != nil {
			return err
		}
		if err := policyVersionStored(ctx, tx, id); err != nil {
			return err
		}
		cur, err := scanPolicyState(tx.QueryRow(ctx, policyStateQuery))
		if err != nil {
			return fmt.Errorf("read policy state: %w", err)
		}
		if cur.Active != expect {
			return fmt.Errorf("activate policy %s: active version is %q, not %q: %w", id, cur.Active, expect, store.ErrConflict)
		}
		if st, err = addActivation(ctx, tx, store.PolicyActivation{
			Version: id, Kind: store.ActivationActivate, Actor: actor, Time: at, Undo: cur.Activation.Seq,
		}, ev); err != nil {
			return err
		}
		return s.notify(ctx, tx, store.Change{Kind: store.ChangePolicy})
	})
	if err != nil {
		return store.PolicyState{}, err
	}
	return st, nil
}

// RollbackPolicy implements store.PolicyStore.
func (s *Store) RollbackPolicy(ctx context.Context, expect, want string, at time.Time, actor string, ev store.Event) (store.PolicyState, error) {
	var st store.PolicyState
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockPolicyState(ctx, tx); err != nil {
			return err
		}
		cur, err := scanPolicyState(tx.QueryRow(ctx, policyStateQuery))
		if err != nil {
			return fmt.Errorf("read policy state: %w", err)
		}
		if cur.Active != expect {
			return fmt.Errorf("roll back policy: active version is %q, not %q: %w", cur.Active, expect, store.ErrConflict)
		}
		if cur.Activation.Undo == 0 {
			return fmt.Errorf("roll back policy: no earlier activation: %w", store.ErrNotFound)
		}
		to, err := scanPolicyActivation(tx.QueryRow(ctx, `SELECT `+policyActivationColumns+` FROM policy_activations WHERE seq = $1`,
			cur.Activation.Undo))
		if err != nil {
			return fmt.Errorf("read policy activation %d: %w", cur.Activation.Undo, err)
		}
		if want != "" && to.Version != want {
			return fmt.Errorf("roll back policy: the active version now rolls back to %q, not %q: %w", to.Version, want, store.ErrConflict)
		}
		if st, err = addActivation(ctx, tx, store.PolicyActivation{
			Version: to.Version, Kind: store.ActivationRollback, Actor: actor, Time: at, Undo: to.Undo,
		}, ev); err != nil {
			return err
		}
		return s.notify(ctx, tx, store.Change{Kind: store.ChangePolicy})
	})
	if err != nil {
		return store.PolicyState{}, err
	}
	return st, nil
}

// SetShadowPolicy implements store.PolicyStore.
func (s *Store) SetShadowPolicy(ctx context.Context, id string, ev store.Event) (store.PolicyState, error) {
	var st store.PolicyState
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockPolicyState(ctx, tx); err != nil {
			return err
		}
		var shadow *string
		if id != "" {
			if err := policyVersionStored(ctx, tx, id); err != nil {
				return err
			}
			shadow = &id
		}
		if _, err := tx.Exec(ctx, `UPDATE policy_state SET shadow = $1 WHERE id = 1`, shadow); err != nil {
			return fmt.Errorf("set shadow policy: %w", err)
		}
		if err := insertEvent(ctx, tx, ev); err != nil {
			return err
		}
		var err error
		if st, err = scanPolicyState(tx.QueryRow(ctx, policyStateQuery)); err != nil {
			return fmt.Errorf("read policy state: %w", err)
		}
		return s.notify(ctx, tx, store.Change{Kind: store.ChangePolicy})
	})
	if err != nil {
		return store.PolicyState{}, err
	}
	return st, nil
}

// PolicyActivations implements store.PolicyStore.
func (s *Store) PolicyActivations(ctx context.Context, limit int) ([]store.PolicyActivation, error) {
	q := `SELECT ` + policyActivationColumns + ` FROM policy_activations ORDER BY seq DESC`
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := s.pool.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("list policy activations: %w", err)
	}
	defer rows.Close()
	var out []store.PolicyActivation
	for rows.Next() {
		a, err := scanPolicyActivation(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// lockPolicyState serialises the changes of the live versions across
// replicas, until the transaction ends.
func lockPolicyState(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `SELECT 1 FROM policy_state WHERE id = 1 FOR UPDATE`); err != nil {
		return fmt.Errorf("lock policy state: %w", err)
	}
	return nil
}

// addActivation records a, makes it the current activation and records ev,
// and returns the state it leads to.
func addActivation(ctx context.Context, tx pgx.Tx, a store.PolicyActivation, ev store.Event) (store.PolicyState, error) {
	var undo *int64
	if a.Undo != 0 {
		undo = &a.Undo
	}
	var seq int64
	if err := tx.QueryRow(ctx, `INSERT INTO policy_activations (version, kind, actor, time, undo) VALUES ($1, $2, $3, $4, $5)
		RETURNING seq`, a.Version, a.Kind, a.Actor, a.Time, undo).Scan(&seq); err != nil {
		return store.PolicyState{}, fmt.Errorf("insert policy activation: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE policy_state SET activation = $1 WHERE id = 1`, seq); err != nil {
		return store.PolicyState{}, fmt.Errorf("update policy state: %w", err)
	}
	if err := insertEvent(ctx, tx, ev); err != nil {
		return store.PolicyState{}, err
	}
	st, err := scanPolicyState(tx.QueryRow(ctx, policyStateQuery))
	if err != nil {
		return store.PolicyState{}, fmt.Errorf("read policy state: %w", err)
	}
	return st, nil
}

// policyVersionStored returns ErrNotFound unless version id is stored.
func policyVersionStored(ctx context.Context, tx pgx.Tx, id string) error {
	var stored bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM policy_versions WHERE id = $1)`, id).Scan(&stored); err != nil {
		return fmt.Errorf("read policy version %s: %w", id, err)
	}
	if !stored {
		return fmt.Errorf("policy version %s: %w", id, store.ErrNotFound)
	}
	return nil
}

func scanPolicyVersion(row pgx.Row) (store.PolicyVersion, error) {
	var v store.PolicyVersion
	if err := row.Scan(&v.ID, &v.Parent, &v.Author, &v.Message, &v.CreatedAt, &v.Tests); err != nil {
		return v, err
	}
	v.CreatedAt = v.CreatedAt.UTC()
	return v, nil
}

func scanPolicyActivation(row pgx.Row) (store.PolicyActivation, error) {
	var a store.PolicyActivation
	if err := row.Scan(&a.Seq, &a.Version, &a.Kind, &a.Actor, &a.Time, &a.Undo); err != nil {
		return a, err
	}
	a.Time = a.Time.UTC()
	return a, nil
}

func scanPolicyState(row pgx.Row) (store.PolicyState, error) {
	var (
		st store.PolicyState
		t  *time.Time
	)
	a := &st.Activation
	if err := row.Scan(&st.Shadow, &a.Seq, &a.Version, &a.Kind, &a.Actor, &t, &a.Undo); err != nil {
		return st, err
	}
	a.Time = fromNullTime(t)
	st.Active = a.Version
	return st, nil
}

// PolicyActivation implements store.PolicyStore.
func (s *Store) PolicyActivation(ctx context.Context, seq int64) (store.PolicyActivation, error) {
	a, err := scanPolicyActivation(s.pool.QueryRow(ctx, `SELECT `+policyActivationColumns+` FROM policy_activations WHERE seq = $1`, seq))
	if errors.Is(err, pgx.ErrNoRows) {
		return a, fmt.Errorf("policy activation %d: %w", seq, store.ErrNotFound)
	}
	if err != nil {
		return a, fmt.Errorf("policy activation %d: %w", seq, err)
	}
	return a, nil
}
