package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/warden-run/warden/internal/store"
)

const policyVersionColumns = `id, parent, author, message, created_at, tests`

const policyActivationColumns = `seq, version, kind, actor, time, coalesce(undo, 0)`

// policyStateQuery reads the live versions: the state row and the
// activation it points to, zero values before any activation.
const policyStateQuery = `SELECT coalesce(s.shadow, ''), coalesce(a.seq, 0), coalesce(a.version, ''),
	coalesce(a.kind, ''), coalesce(a.actor, ''), a.time, coalesce(a.undo, 0)
	FROM policy_state s LEFT JOIN policy_activations a ON a.seq = s.activation WHERE s.id = 1`

// AddPolicyVersion implements store.PolicyStore.
func (s *Store) AddPolicyVersion(ctx context.Context, v store.PolicyVersion, ev store.Event) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO policy_versions (`+policyVersionColumns+`) VALUES (?, ?, ?, ?, ?, ?)`,
			v.ID, v.Parent, v.Author, v.Message, micros(v.CreatedAt), nullBytes(v.Tests))
		if isConstraint(err) {
			return fmt.Errorf("policy version %s: %w", v.ID, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("insert policy version: %w", err)
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO policy_files (version, path, content) VALUES (?, ?, ?)`)
		if err != nil {
			return fmt.Errorf("insert policy files: %w", err)
		}
		defer stmt.Close()
		for _, path := range slices.Sorted(maps.Keys(v.Files)) {
			content := v.Files[path]
			if content == nil {
				content = []byte{}
			}
			if _, err := stmt.ExecContext(ctx, v.ID, path, content); err != nil {
				return fmt.Errorf("insert policy file %s: %w", path, err)
			}
		}
		return insertEvent(ctx, tx, ev)
	})
}

// PolicyVersion implements store.PolicyStore.
func (s *Store) PolicyVersion(ctx context.Context, id string) (store.PolicyVersion, error) {
	v, err := scanPolicyVersion(s.r.QueryRowContext(ctx, `SELECT `+policyVersionColumns+` FROM policy_versions WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.PolicyVersion{}, fmt.Errorf("policy version %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.PolicyVersion{}, fmt.Errorf("read policy version %s: %w", id, err)
	}
	// A version and its files are stored in one transaction and never change:
	// once the version is visible, so are all of its files.
	rows, err := s.r.QueryContext(ctx, `SELECT path, content FROM policy_files WHERE version = ?`, id)
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
		var created, seq int64
		err := s.r.QueryRowContext(ctx, `SELECT created_at, seq FROM policy_versions WHERE id = ?`, before).Scan(&created, &seq)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("policy version %s: %w", before, store.ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("list policy versions: %w", err)
		}
		q += ` WHERE created_at < ? OR (created_at = ? AND seq < ?)`
		args = append(args, created, created, seq)
	}
	q += ` ORDER BY created_at DESC, seq DESC`
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
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
	st, err := scanPolicyState(s.r.QueryRowContext(ctx, policyStateQuery))
	if err != nil {
		return store.PolicyState{}, fmt.Errorf("read policy state: %w", err)
	}
	return st, nil
}

// ActivatePolicy implements store.PolicyStore.
func (s *Store) ActivatePolicy(ctx context.Context, id, expect string, at time.Time, actor string, ev store.Event) (store.PolicyState, error) {
	var st store.PolicyState
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := policyVersionStored(ctx, tx, id); err != nil {
			return err
		}
		cur, err := scanPolicyState(tx.QueryRowContext(ctx, policyStateQuery))
		if err != nil {
			return fmt.Errorf("read policy state: %w", err)
		}
		if cur.Active != expect {
			return fmt.Errorf("activate policy %s: active version is %q, not %q: %w", id, cur.Active, expect, store.ErrConflict)
		}
		st, err = addActivation(ctx, tx, store.PolicyActivation{
			Version: id, Kind: store.ActivationActivate, Actor: actor, Time: at, Undo: cur.Activation.Seq,
		}, ev)
		return err
	})
	if err != nil {
		return store.PolicyState{}, err
	}
	s.feed.Publish(store.Change{Kind: store.ChangePolicy})
	return st, nil
}

// RollbackPolicy implements store.PolicyStore.
func (s *Store) RollbackPolicy(ctx context.Context, expect, want string, at time.Time, actor string, ev store.Event) (store.PolicyState, error) {
	var st store.PolicyState
	err := s.tx(ctx, func(tx *sql.Tx) error {
		cur, err := scanPolicyState(tx.QueryRowContext(ctx, policyStateQuery))
		if err != nil {
			return fmt.Errorf("read policy state: %w", err)
		}
		if cur.Active != expect {
			return fmt.Errorf("roll back policy: active version is %q, not %q: %w", cur.Active, expect, store.ErrConflict)
		}
		if cur.Activation.Undo == 0 {
			return fmt.Errorf("roll back policy: no earlier activation: %w", store.ErrNotFound)
		}
		to, err := scanPolicyActivation(tx.QueryRowContext(ctx, `SELECT `+policyActivationColumns+` FROM policy_activations WHERE seq = ?`,
			cur.Activation.Undo))
		if err != nil {
			return fmt.Errorf("read policy activation %d: %w", cur.Activation.Undo, err)
		}
		if want != "" && to.Version != want {
			return fmt.Errorf("roll back policy: the active version now rolls back to %q, not %q: %w", to.Version, want, store.ErrConflict)
		}
		st, err = addActivation(ctx, tx, store.PolicyActivation{
			Version: to.Version, Kind: store.ActivationRollback, Actor: actor, Time: at, Undo: to.Undo,
		}, ev)
		return err
	})
	if err != nil {
		return store.PolicyState{}, err
	}
	s.feed.Publish(store.Change{Kind: store.ChangePolicy})
	return st, nil
}

// SetShadowPolicy implements store.PolicyStore.
func (s *Store) SetShadowPolicy(ctx context.Context, id string, ev store.Event) (store.PolicyState, error) {
	var st store.PolicyState
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if id != "" {
			if err := policyVersionStored(ctx, tx, id); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE policy_state SET shadow = ? WHERE id = 1`, sql.NullString{String: id, Valid: id != ""}); err != nil {
			return fmt.Errorf("set shadow policy: %w", err)
		}
		if err := insertEvent(ctx, tx, ev); err != nil {
			return err
		}
		var err error
		if st, err = scanPolicyState(tx.QueryRowContext(ctx, policyStateQuery)); err != nil {
			return fmt.Errorf("read policy state: %w", err)
		}
		return nil
	})
	if err != nil {
		return store.PolicyState{}, err
	}
	s.feed.Publish(store.Change{Kind: store.ChangePolicy})
	return st, nil
}

// PolicyActivations implements store.PolicyStore.
func (s *Store) PolicyActivations(ctx context.Context, limit int) ([]store.PolicyActivation, error) {
	q := `SELECT ` + policyActivationColumns + ` FROM policy_activations ORDER BY seq DESC`
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := s.r.QueryContext(ctx, q)
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

// addActivation records a, makes it the current activation and records ev,
// and returns the state it leads to.
func addActivation(ctx context.Context, tx *sql.Tx, a store.PolicyActivation, ev store.Event) (store.PolicyState, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO policy_activations (version, kind, actor, time, undo) VALUES (?, ?, ?, ?, ?)`,
		a.Version, a.Kind, a.Actor, micros(a.Time), sql.NullInt64{Int64: a.Undo, Valid: a.Undo != 0})
	if err != nil {
		return store.PolicyState{}, fmt.Errorf("insert policy activation: %w", err)
	}
	seq, err := res.LastInsertId()
	if err != nil {
		return store.PolicyState{}, fmt.Errorf("insert policy activation: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE policy_state SET activation = ? WHERE id = 1`, seq); err != nil {
		return store.PolicyState{}, fmt.Errorf("update policy state: %w", err)
	}
	if err := insertEvent(ctx, tx, ev); err != nil {
		return store.PolicyState{}, err
	}
	st, err := scanPolicyState(tx.QueryRowContext(ctx, policyStateQuery))
	if err != nil {
		return store.PolicyState{}, fmt.Errorf("read policy state: %w", err)
	}
	return st, nil
}

// policyVersionStored returns ErrNotFound unless version id is stored.
func policyVersionStored(ctx context.Context, tx *sql.Tx, id string) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM policy_versions WHERE id = ?`, id).Scan(&n); err != nil {
		return fmt.Errorf("read policy version %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("policy version %s: %w", id, store.ErrNotFound)
	}
	return nil
}

func scanPolicyVersion(row scanner) (store.PolicyVersion, error) {
	var (
		v       store.PolicyVersion
		created int64
	)
	if err := row.Scan(&v.ID, &v.Parent, &v.Author, &v.Message, &created, &v.Tests); err != nil {
		return v, err
	}
	v.CreatedAt = fromMicros(created)
	return v, nil
}

func scanPolicyActivation(row scanner) (store.PolicyActivation, error) {
	var (
		a store.PolicyActivation
		t int64
	)
	if err := row.Scan(&a.Seq, &a.Version, &a.Kind, &a.Actor, &t, &a.Undo); err != nil {
		return a, err
	}
	a.Time = fromMicros(t)
	return a, nil
}

func scanPolicyState(row scanner) (store.PolicyState, error) {
	var (
		st store.PolicyState
		t  sql.NullInt64
	)
	a := &st.Activation
	if err := row.Scan(&st.Shadow, &a.Seq, &a.Version, &a.Kind, &a.Actor, &t, &a.Undo); err != nil {
		return st, err
	}
	a.Time = fromNullMicros(t)
	st.Active = a.Version
	return st, nil
}

// nullBytes stores an empty b as NULL, to read back as nil.
func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// PolicyActivation implements store.PolicyStore.
func (s *Store) PolicyActivation(ctx context.Context, seq int64) (store.PolicyActivation, error) {
	a, err := scanPolicyActivation(s.r.QueryRowContext(ctx, `SELECT `+policyActivationColumns+` FROM policy_activations WHERE seq = ?`, seq))
	if errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("policy activation %d: %w", seq, store.ErrNotFound)
	}
	if err != nil {
		return a, fmt.Errorf("policy activation %d: %w", seq, err)
	}
	return a, nil
}
