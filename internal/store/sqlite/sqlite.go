// Package sqlite is the embedded store: one SQLite database in the data
// directory, in WAL mode, through the pure-Go modernc.org/sqlite driver,
// with single-use values in an append-only replay log beside it.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	sqlite3 "modernc.org/sqlite"

	"github.com/warden-run/warden/internal/store"
	"github.com/warden-run/warden/internal/store/replaylog"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Config says where the database lives.
type Config struct {
	// Path is the database file, for example warden-data/warden.db. The
	// replay log goes in the directory "replay" beside it.
	Path string
}

// Store is the SQLite implementation of store.Store.
type Store struct {
	w    *sql.DB        // the one writer connection: SQLite allows one writer at a time
	r    *sql.DB        // readers, concurrent under WAL
	used *replaylog.Log // single-use values
	feed store.Broadcaster
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database at cfg.Path and applies
// pending migrations.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Path == "" {
		return nil, errors.New("sqlite: no database path")
	}
	// The replay log's lock also keeps a second process off this database:
	// the in-process change feed must see every write.
	used, err := replaylog.Open(filepath.Join(filepath.Dir(cfg.Path), "replay"))
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			used.Close()
		}
	}()
	if err := createPrivate(cfg.Path); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	// FULL: a commit that returned survives power loss, not only a crash.
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	dsn := "file:" + (&url.URL{Path: cfg.Path}).EscapedPath() + "?" + q.Encode()

	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", cfg.Path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", cfg.Path, err)
	}
	q.Add("_pragma", "query_only(1)")
	r, err := sql.Open("sqlite", "file:"+(&url.URL{Path: cfg.Path}).EscapedPath()+"?"+q.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", cfg.Path, err)
	}
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	s := &Store{w: w, r: r, used: used}
	if err := s.migrate(ctx); err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	ok = true
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	ms, err := store.LoadMigrations(migrations, "migrations")
	if err != nil {
		return err
	}
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("sqlite: migrations table: %w", err)
	}
	for _, m := range ms {
		err := s.tx(ctx, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, m.Version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				m.Version, m.Name, micros(store.Now()))
			return err
		})
		if err != nil {
			return fmt.Errorf("sqlite: migration %04d_%s: %w", m.Version, m.Name, err)
		}
	}
	var newest int
	if err := s.w.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&newest); err != nil {
		return fmt.Errorf("sqlite: read schema version: %w", err)
	}
	if newest > len(ms) {
		return fmt.Errorf("sqlite: the database has schema version %d but this binary knows only up to %d; use a newer warden", newest, len(ms))
	}
	return nil
}

// Backend implements store.Store.
func (s *Store) Backend() string { return "sqlite" }

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	return s.r.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
}

// Close implements store.Store. Closing twice is harmless.
func (s *Store) Close() error {
	return errors.Join(s.r.Close(), s.w.Close(), s.used.Close())
}

// Subscribe implements store.ChangeFeed. Only this process writes the
// database, so the in-process broadcast sees every change.
func (s *Store) Subscribe(ctx context.Context) <-chan store.Change { return s.feed.Subscribe(ctx) }

// FeedHealthy implements store.ChangeFeed; an in-process feed cannot disconnect.
func (s *Store) FeedHealthy() bool { return true }

// Prune implements store.Store.
func (s *Store) Prune(ctx context.Context, now time.Time) error {
	if _, err := s.w.ExecContext(ctx, `DELETE FROM revoked_tokens WHERE expires_at < ?`, micros(now)); err != nil {
		return err
	}
	return s.used.Prune(now)
}

// MarkUsed implements store.ReplayStore, through the replay log.
func (s *Store) MarkUsed(ctx context.Context, scope, value string, expires time.Time) error {
	return s.used.MarkUsed(ctx, scope, value, expires)
}

// createPrivate creates the database file readable by its owner only, if it
// does not exist yet; SQLite gives its -wal and -shm files the same mode.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// tx runs fn in a write transaction and commits it when fn returns nil.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func isConstraint(err error) bool {
	var e *sqlite3.Error
	return errors.As(err, &e) && e.Code()&0xff == 19 // SQLITE_CONSTRAINT
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func nullMicros(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

func fromNullMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMicros(v.Int64)
}
