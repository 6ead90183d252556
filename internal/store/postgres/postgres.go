// Package postgres is the scale-out store: several Warden replicas share one
// PostgreSQL database through pgx, and learn of each other's safety-relevant
// changes through LISTEN/NOTIFY.
package postgres

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/warden-run/warden/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Config says which database to use.
type Config struct {
	// DSN is a postgres:// URL or keyword/value connection string.
	DSN string
	// Schema, when set, keeps every table in that schema (created if missing);
	// tests use it to share one database.
	Schema string
	// Logger receives connection trouble of the change feed.
	Logger *slog.Logger
}

// defaultMaxConns is the pool size unless the DSN sets pool_max_conns.
const defaultMaxConns = 32

// The change feed's liveness: every replica sends a heartbeat notification
// each heartbeatEvery; a listener that has heard nothing for feedSilence
// reports the feed down.
const (
	heartbeatEvery = time.Second
	feedSilence    = 3 * time.Second
	listenTimeout  = 10 * time.Second
	heartbeatKind  = "heartbeat"
)

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Store is the PostgreSQL implementation of store.Store.
type Store struct {
	pool    *pgxpool.Pool
	channel string
	log     *slog.Logger
	feed    store.Broadcaster
	audit   chan struct{} // announcements of audit appends, coalesced
	healthy atomic.Bool
	// lastHeard is when the listener last received anything, in monotonic
	// nanoseconds since started. Heartbeats keep it moving; a connection that
	// looks open but delivers nothing (a half-open socket, a pooler that
	// drops LISTEN) goes stale.
	lastHeard atomic.Int64
	started   time.Time
	stop      context.CancelFunc
	done      chan struct{}

	closeOnce sync.Once
}

var _ store.Store = (*Store)(nil)

// Open connects, applies pending migrations and starts the change feed.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Schema != "" && !schemaName.MatchString(cfg.Schema) {
		return nil, fmt.Errorf("postgres: schema %q: want lower-case letters, digits and '_'", cfg.Schema)
	}
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		// pgx's message can quote the DSN, password included; do not repeat it.
		return nil, errors.New("postgres: the store DSN does not parse; want postgres://user:password@host:port/db")
	}
	if cfg.Schema != "" {
		pc.ConnConfig.RuntimeParams["search_path"] = cfg.Schema
	}
	if !strings.Contains(cfg.DSN, "pool_max_conns") {
		// Concurrent single-use inserts share the server's WAL flushes only
		// if enough of them are in flight; pgx's default (4 on 2 cores) is too few.
		pc.MaxConns = defaultMaxConns
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{channel: "warden_changes", log: log, done: make(chan struct{}), started: time.Now(), audit: make(chan struct{}, 1)}
	if cfg.Schema != "" {
		s.channel += "_" + cfg.Schema
	}
	if cfg.Schema != "" {
		conn, err := pgx.ConnectConfig(ctx, pc.ConnConfig.Copy())
		if err != nil {
			return nil, fmt.Errorf("postgres: connect: %w", err)
		}
		_, err = conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+cfg.Schema)
		conn.Close(ctx)
		if err != nil {
			return nil, fmt.Errorf("postgres: create schema: %w", err)
		}
	}
	s.pool, err = pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := s.pool.Ping(ctx); err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := s.migrate(ctx, cfg.Schema); err != nil {
		s.pool.Close()
		return nil, err
	}
	lctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	ready := make(chan struct{})
	go s.listen(lctx, pc.ConnConfig, ready)
	go s.heartbeat(lctx)
	wait := time.NewTimer(listenTimeout)
	defer wait.Stop()
	select {
	case <-ready:
	case <-wait.C:
		s.Close()
		return nil, fmt.Errorf("postgres: the change feed did not connect within %s", listenTimeout)
	case <-ctx.Done():
		s.Close()
		return nil, fmt.Errorf("postgres: start change feed: %w", ctx.Err())
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context, schema string) error {
	ms, err := store.LoadMigrations(migrations, "migrations")
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// One replica migrates at a time; the others wait and then find nothing to do.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "warden.migrate."+schema); err != nil {
			return fmt.Errorf("postgres: migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)`); err != nil {
			return fmt.Errorf("postgres: migrations table: %w", err)
		}
		var newest int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&newest); err != nil {
			return fmt.Errorf("postgres: read schema version: %w", err)
		}
		if newest > len(ms) {
			return fmt.Errorf("postgres: the database has schema version %d but this binary knows only up to %d; use a newer warden", newest, len(ms))
		}
		for _, m := range ms[newest:] {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("postgres: migration %04d_%s: %w", m.Version, m.Name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, now())`,
				m.Version, m.Name); err != nil {
				return fmt.Errorf("postgres: migration %04d_%s: %w", m.Version, m.Name, err)
			}
		}
		return nil
	})
}

// listen keeps one connection LISTENing for changes committed by any replica,
// reconnecting with backoff. After every (re)connect it announces a resync,
// because notifications sent while it was away are lost.
func (s *Store) listen(ctx context.Context, cc *pgx.ConnConfig, ready chan struct{}) {
	defer close(s.done)
	backoff := 100 * time.Millisecond
	first := true
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, cc.Copy(), func() {
			s.healthy.Store(true)
			backoff = 100 * time.Millisecond
			if first {
				first = false
				close(ready)
			} else {
				s.feed.Publish(store.Change{Kind: store.ChangeResync})
			}
		})
		s.healthy.Store(false)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("change feed disconnected; retrying", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (s *Store) listenOnce(ctx context.Context, cc *pgx.ConnConfig, connected func()) error {
	cc.RuntimeParams["application_name"] = "warden-change-feed"
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		return err
	}
	s.lastHeard.Store(int64(time.Since(s.started)))
	connected()
	for {
		// Heartbeats arrive every second: a wait that hears nothing for
		// feedSilence means a dead connection, so give it up and reconnect.
		wctx, cancel := context.WithTimeout(ctx, feedSilence)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil && wctx.Err() != nil {
				return errors.New("no notification, not even a heartbeat, for " + feedSilence.String())
			}
			return err
		}
		s.lastHeard.Store(int64(time.Since(s.started)))
		var c store.Change
		if err := json.Unmarshal([]byte(n.Payload), &c); err != nil {
			s.log.Warn("change feed: unreadable notification; resyncing", "err", err)
			c = store.Change{Kind: store.ChangeResync}
		}
		if c.Kind == heartbeatKind {
			continue
		}
		if c.Kind == store.ChangeAudit {
			// As many as the log's commits: not for every subscriber, whose
			// buffers they would fill (and a full buffer is a resync), but
			// for the one follower of the log, coalesced.
			select {
			case s.audit <- struct{}{}:
			default:
			}
			continue
		}
		s.feed.Publish(c)
	}
}

// heartbeat notifies the channel regularly, so every listener can tell a
// live feed from a silent one.
func (s *Store) heartbeat(ctx context.Context) {
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	payload := `{"kind":"` + heartbeatKind + `"}`
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			hctx, cancel := context.WithTimeout(ctx, heartbeatEvery)
			if _, err := s.pool.Exec(hctx, `SELECT pg_notify($1, $2)`, s.channel, payload); err != nil && ctx.Err() == nil {
				s.log.Warn("change feed: heartbeat failed", "err", err)
			}
			cancel()
		}
	}
}

// notify announces c to every replica when tx commits.
func (s *Store) notify(ctx context.Context, tx pgx.Tx, c store.Change) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, s.channel, string(b))
	return err
}

// Backend implements store.Store.
func (s *Store) Backend() string { return "postgres" }

// Channel is the LISTEN/NOTIFY channel of the change feed: a notification
// on it with a store.Change as its JSON payload reaches every replica's
// subscribers (store.ChangeAudit reaches AuditAppended instead).
func (s *Store) Channel() string { return s.channel }

// AuditAppended receives a value when any replica has appended to the
// shared audit log since it was last read (announcements coalesce): the
// follower of the log reads it then instead of at its next poll. The
// change feed's subscribers never see these announcements.
func (s *Store) AuditAppended() <-chan struct{} { return s.audit }

// Pool returns the store's connections, for the subsystems that keep their
// own tables in the same database (the audit log). They stay the store's:
// Close closes them.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Subscribe implements store.ChangeFeed.
func (s *Store) Subscribe(ctx context.Context) <-chan store.Change { return s.feed.Subscribe(ctx) }

// FeedHealthy implements store.ChangeFeed: connected, and heard from recently.
func (s *Store) FeedHealthy() bool {
	return s.healthy.Load() && time.Since(s.started)-time.Duration(s.lastHeard.Load()) < feedSilence
}

// Close implements store.Store.
// Closing twice is harmless.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.stop != nil {
			s.stop()
			<-s.done
		}
		s.pool.Close()
	})
	return nil
}

// Prune implements store.Store.
func (s *Store) Prune(ctx context.Context, now time.Time) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM used_values WHERE expires_at < $1`, now); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM revoked_tokens WHERE expires_at < $1`, now)
		return err
	})
}

func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func fromNullTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}
