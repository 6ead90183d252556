// Package pglog is the audit log's PostgreSQL backend, shared by replicas:
// the database sequences entries, and the replica holding an advisory lock
// integrates them into the Merkle tree and signs checkpoints.
package pglog

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/transparency-dev/merkle/compact"

	"github.com/warden-run/warden/internal/audit"
)

// Config configures the backend.
type Config struct {
	// Schema is the schema the pool's search_path selects, when it is not
	// the database's default (tests keep several logs in one database this
	// way). It names the lead lock, so that the logs of two schemas do not
	// share one; replicas of one log must agree on it.
	Schema string
	// Notify, when set, is a channel notified (pg_notify) with
	// NotifyPayload in the transaction of every append, so that followers
	// of the log on other replicas hear of new entries at once.
	Notify        string
	NotifyPayload string
}

// Log implements audit.Backend on the audit_* tables, which the store's
// migrations create in the same database.
type Log struct {
	pool     *pgxpool.Pool
	lockName string
	cfg      Config
}

var _ audit.Backend = (*Log)(nil)

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Open checks that the pool reaches the audit tables and returns the
// backend on them. The pool stays the caller's: Close does not close it.
func Open(ctx context.Context, cfg Config, pool *pgxpool.Pool) (*Log, error) {
	if pool == nil {
		return nil, errors.New("audit log: a PostgreSQL pool is required")
	}
	if cfg.Schema != "" && !schemaName.MatchString(cfg.Schema) {
		return nil, fmt.Errorf("audit log: schema %q: want lower-case letters, digits and '_'", cfg.Schema)
	}
	// The same name as the store's earlier releases took, so that replicas
	// of both kinds exclude each other during a rolling upgrade.
	lock := "warden.audit.lead.warden_changes"
	if cfg.Schema != "" {
		lock += "_" + cfg.Schema
	}
	l := &Log{pool: pool, lockName: lock, cfg: cfg}
	var size int64
	if err := pool.QueryRow(ctx, `SELECT size FROM audit_head WHERE id = 1`).Scan(&size); err != nil {
		return nil, fmt.Errorf("audit log: the audit tables (made by the store's migrations) cannot be read: %w", err)
	}
	return l, nil
}

// Append implements audit.Sequencer. The transaction locks the head row, so
// appends from all replicas are serialised in the order they commit.
func (l *Log) Append(ctx context.Context, entries []*audit.Entry) error {
	return pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		var size int64
		var prev []byte
		if err := tx.QueryRow(ctx, `SELECT size, last_leaf FROM audit_head WHERE id = 1 FOR UPDATE`).Scan(&size, &prev); err != nil {
			return fmt.Errorf("audit head: %w", err)
		}
		data, leaves, err := audit.Sequence(entries, size, prev)
		if err != nil {
			return err
		}
		rows := make([][]any, len(entries))
		for i, e := range entries {
			rows[i] = []any{e.Index, e.Time, string(e.Kind), nullString(e.Agent), nullString(e.Outcome), nullString(e.DecisionID), data[i], leaves[i]}
		}
		size += int64(len(entries))
		prev = leaves[len(leaves)-1]
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_entries"},
			[]string{"idx", "time", "kind", "agent", "outcome", "decision_id", "data", "leaf"}, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("audit entries: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE audit_head SET size = $1, last_leaf = $2 WHERE id = 1`, size, prev); err != nil {
			return err
		}
		if l.cfg.Notify != "" {
			_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, l.cfg.Notify, l.cfg.NotifyPayload)
		}
		return err
	})
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Size implements audit.Sequencer.
func (l *Log) Size(ctx context.Context) (int64, error) {
	var n int64
	err := l.pool.QueryRow(ctx, `SELECT size FROM audit_head WHERE id = 1`).Scan(&n)
	return n, err
}

// Read implements audit.Sequencer.
func (l *Log) Read(ctx context.Context, from, to int64) ([][]byte, error) {
	return l.column(ctx, "data", from, to)
}

// LeafHashes implements audit.Sequencer.
func (l *Log) LeafHashes(ctx context.Context, from, to int64) ([][]byte, error) {
	return l.column(ctx, "leaf", from, to)
}

func (l *Log) column(ctx context.Context, col string, from, to int64) ([][]byte, error) {
	rows, err := l.pool.Query(ctx, `SELECT idx, `+col+` FROM audit_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx`, from, to)
	if err != nil {
		return nil, fmt.Errorf("audit read: %w", err)
	}
	defer rows.Close()
	out := make([][]byte, 0, max(to-from, 0))
	for rows.Next() {
		var idx int64
		var b []byte
		if err := rows.Scan(&idx, &b); err != nil {
			return nil, err
		}
		if idx != from+int64(len(out)) {
			return nil, fmt.Errorf("audit read: entry %d is missing", from+int64(len(out)))
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if int64(len(out)) != to-from {
		return nil, fmt.Errorf("audit read [%d, %d): %d entries stored", from, to, len(out))
	}
	return out, nil
}

// TreeSize implements audit.TreeStore.
func (l *Log) TreeSize(ctx context.Context) (int64, error) {
	var n int64
	err := l.pool.QueryRow(ctx, `SELECT size FROM audit_tree WHERE id = 1`).Scan(&n)
	return n, err
}

// StoreTree implements audit.TreeStore. The tree size moves only forward
// and only from where the caller found it: a leader that lost its lock
// without knowing fails here instead of writing over the new leader.
func (l *Log) StoreTree(ctx context.Context, from, size int64, nodes []audit.Node) error {
	return pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		rows := make([][]any, len(nodes))
		for i, n := range nodes {
			rows[i] = []any{int32(n.ID.Level), int64(n.ID.Index), n.Hash}
		}
		// Nodes are a function of the entries: one stored already is the same.
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS audit_nodes_in (level INTEGER, idx BIGINT, hash BYTEA) ON COMMIT DELETE ROWS`); err != nil {
			return err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_nodes_in"}, []string{"level", "idx", "hash"}, pgx.CopyFromRows(rows)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO audit_nodes SELECT level, idx, hash FROM audit_nodes_in ON CONFLICT DO NOTHING`); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE audit_tree SET size = $1 WHERE id = 1 AND size = $2`, size, from)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return errors.New("audit tree: another leader has integrated these entries")
		}
		return nil
	})
}

// Nodes implements audit.TreeStore.
func (l *Log) Nodes(ctx context.Context, ids []compact.NodeID) ([][]byte, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	var q strings.Builder
	q.WriteString(`SELECT level, idx, hash FROM audit_nodes WHERE (level, idx) IN (`)
	args := make([]any, 0, 2*len(ids))
	for i, id := range ids {
		if i > 0 {
			q.WriteString(", ")
		}
		fmt.Fprintf(&q, "($%d::INTEGER, $%d::BIGINT)", 2*i+1, 2*i+2)
		args = append(args, int32(id.Level), int64(id.Index))
	}
	q.WriteString(")")
	rows, err := l.pool.Query(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("audit nodes: %w", err)
	}
	defer rows.Close()
	found := make(map[compact.NodeID][]byte, len(ids))
	for rows.Next() {
		var level int32
		var idx int64
		var h []byte
		if err := rows.Scan(&level, &idx, &h); err != nil {
			return nil, err
		}
		found[compact.NewNodeID(uint(level), uint64(idx))] = h
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([][]byte, len(ids))
	for i, id := range ids {
		h, ok := found[id]
		if !ok {
			return nil, fmt.Errorf("audit nodes: node %d/%d is not stored", id.Level, id.Index)
		}
		out[i] = h
	}
	return out, nil
}

// AddCheckpoint implements audit.CheckpointStore.
func (l *Log) AddCheckpoint(ctx context.Context, c audit.StoredCheckpoint) error {
	_, err := l.pool.Exec(ctx, `INSERT INTO audit_checkpoints (size, time, signed) VALUES ($1, $2, $3)`, c.Size, c.Time, c.Signed)
	return err
}

// Checkpoints implements audit.CheckpointStore.
func (l *Log) Checkpoints(ctx context.Context, fromSize int64, limit int) ([]audit.StoredCheckpoint, error) {
	q := `SELECT size, time, signed FROM audit_checkpoints WHERE size >= $1 ORDER BY size, seq`
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := l.pool.Query(ctx, q, fromSize)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []audit.StoredCheckpoint
	for rows.Next() {
		var c audit.StoredCheckpoint
		if err := rows.Scan(&c.Size, &c.Time, &c.Signed); err != nil {
			return nil, err
		}
		c.Time = c.Time.UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}

// LatestCheckpoint implements audit.CheckpointStore.
func (l *Log) LatestCheckpoint(ctx context.Context) (audit.StoredCheckpoint, error) {
	var c audit.StoredCheckpoint
	err := l.pool.QueryRow(ctx, `SELECT size, time, signed FROM audit_checkpoints ORDER BY size DESC, seq DESC LIMIT 1`).Scan(&c.Size, &c.Time, &c.Signed)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, audit.ErrNoCheckpoint
	}
	c.Time = c.Time.UTC()
	return c, err
}

// Lead implements audit.Backend with a session advisory lock, held on a
// connection of its own: if the process dies, the connection goes and the
// lock with it.
func (l *Log) Lead(ctx context.Context) (audit.Lease, error) {
	conn, err := l.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	var held bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext($1))`, l.lockName).Scan(&held); err != nil {
		conn.Release()
		return nil, err
	}
	if !held {
		conn.Release()
		return nil, nil
	}
	return &pgLease{conn: conn, name: l.lockName}, nil
}

// pgLease is an advisory lock held by one pooled connection's session.
type pgLease struct {
	conn *pgxpool.Conn
	name string
}

// Check asks the lock's session whether it is still alive. A session lock
// ends only with its session (nothing here unlocks it otherwise): if the
// connection broke, the lock is gone, maybe to another replica. A round trip
// on the connection is enough, and is cheaper than reading pg_locks.
func (l *pgLease) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := l.conn.Ping(ctx); err != nil {
		return fmt.Errorf("the audit lead lock's connection: %w", err)
	}
	return nil
}

// Release gives the lock up; a connection that cannot unlock is closed,
// which also frees it.
func (l *pgLease) Release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := l.conn.Exec(ctx, `SELECT pg_advisory_unlock(hashtext($1))`, l.name); err != nil {
		l.conn.Conn().Close(ctx)
	}
	l.conn.Release()
}

// Query implements audit.Backend with the entries' indexes.
func (l *Log) Query(ctx context.Context, q audit.Query) ([]audit.Stored, int64, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	where := []string{"idx > $1"}
	args := []any{q.After}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if q.Agent != "" {
		add("agent = $%d", q.Agent)
	}
	if q.Kind != "" {
		add("kind = $%d", string(q.Kind))
	}
	if q.Outcome != "" {
		add("outcome = $%d", q.Outcome)
	}
	if q.DecisionID != "" {
		add("decision_id = $%d", q.DecisionID)
	}
	if !q.Since.IsZero() {
		add("time >= $%d", q.Since)
	}
	if !q.Until.IsZero() {
		add("time < $%d", q.Until)
	}
	size, err := l.Size(ctx)
	if err != nil {
		return nil, 0, err
	}
	rows, err := l.pool.Query(ctx, `SELECT idx, data FROM audit_entries WHERE `+strings.Join(where, " AND ")+
		fmt.Sprintf(` ORDER BY idx LIMIT %d`, q.Limit), args...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var out []audit.Stored
	last := q.After
	for rows.Next() {
		var idx int64
		var data []byte
		if err := rows.Scan(&idx, &data); err != nil {
			return nil, 0, err
		}
		e, err := audit.DecodeEntry(data)
		if err != nil {
			return nil, 0, fmt.Errorf("audit entry %d: %w", idx, err)
		}
		out = append(out, audit.Stored{Entry: e, Data: data})
		last = idx
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	if len(out) < q.Limit {
		last = max(last, size-1) // everything up to the end was examined
	}
	return out, last, nil
}

// Cursor implements audit.Backend.
func (l *Log) Cursor(ctx context.Context, name string) (int64, error) {
	var n int64
	err := l.pool.QueryRow(ctx, `SELECT next FROM audit_cursors WHERE name = $1`, name).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return n, err
}

// SetCursor implements audit.Backend.
func (l *Log) SetCursor(ctx context.Context, name string, next int64) error {
	if name == "" || len(name) > 64 || strings.ContainsAny(name, "/\\. ") {
		return fmt.Errorf("audit cursor name %q", name)
	}
	_, err := l.pool.Exec(ctx, `INSERT INTO audit_cursors (name, next) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET next = EXCLUDED.next`, name, next)
	return err
}

// Close implements audit.Backend; the pool is the caller's to close.
func (l *Log) Close() error { return nil }
