package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/warden-run/warden/internal/store"
	"github.com/warden-run/warden/internal/store/postgres"
	"github.com/warden-run/warden/internal/store/storetest"
)

// dsn returns the test database, or skips the test with the reason.
func dsn(t testing.TB) string {
	d := os.Getenv("WARDEN_TEST_POSTGRES")
	if d == "" {
		t.Skip("PostgreSQL conformance skipped: set WARDEN_TEST_POSTGRES to a DSN (postgres://user:pass@127.0.0.1:5432/warden_test) to run it")
	}
	return d
}

// open makes a fresh schema for one test and drops it afterwards.
func open(t testing.TB) store.Store {
	d := dsn(t)
	b := make([]byte, 6)
	rand.Read(b)
	schema := "t_" + hex.EncodeToString(b)
	ctx := context.Background()
	s, err := postgres.Open(ctx, postgres.Config{DSN: d, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		conn, err := pgx.Connect(ctx, d)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}

// TestChangeFeedReconnects kills the feed's LISTEN connection on the server:
// the feed reports itself down, reconnects, and announces a resync, because
// notifications sent meanwhile are lost.
func TestChangeFeedReconnects(t *testing.T) {
	t.Parallel()
	s := open(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	feed := s.Subscribe(ctx)
	conn, err := pgx.Connect(ctx, dsn(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// The feed of this test's store is the one LISTENing on its schema's channel.
	var pid int
	err = conn.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = 'warden-change-feed'
		AND query LIKE 'LISTEN%' AND query LIKE '%'||$1||'%'`, postgres.ChannelOf(s.(*postgres.Store))).Scan(&pid)
	if err != nil {
		t.Fatalf("find the listener: %v", err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	sawDown := false
	for {
		select {
		case c := <-feed:
			if c.Kind == store.ChangeResync {
				if !s.FeedHealthy() {
					t.Fatal("resync announced while the feed is down")
				}
				if !sawDown {
					t.Log("the reconnect was faster than the health poll; fine")
				}
				return
			}
		case <-time.After(5 * time.Millisecond):
			if !s.FeedHealthy() {
				sawDown = true
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no resync within 10s of losing the listener")
		}
	}
}
