package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/audittest"
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

func TestAuditConformance(t *testing.T) {
	audittest.Run(t, func(t *testing.T) func(t *testing.T) audit.Backend {
		s := open(t).(*postgres.Store)
		return func(t *testing.T) audit.Backend { return s.AuditLog() }
	})
}

// TestAuditTamperingIsDetected tampers with the tables the way someone with
// write access to the database (but not the checkpoint key) could, and
// verifies what the server would export.
func TestAuditTamperingIsDetected(t *testing.T) {
	signer := audittest.Signer(t)
	ref, trusted := audittest.BuildReference(t, open(t).(*postgres.Store).AuditLog(), signer)
	audittest.RunTamper(t, ref, trusted, signer, func(t *testing.T, items []audit.Item) audit.Source {
		s := open(t).(*postgres.Store)
		ctx := context.Background()
		var n int64
		for _, it := range items {
			if it.Checkpoint {
				if err := s.AuditLog().AddCheckpoint(ctx, audit.StoredCheckpoint{Size: audittest.NoteSize(t, it.Data), Signed: it.Data, Time: time.Now()}); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := postgres.InsertRawAuditEntry(ctx, s, n, it.Data); err != nil {
				t.Fatal(err)
			}
			n++
		}
		src, err := audit.ReadBackend(ctx, s.AuditLog())
		if err != nil {
			t.Fatal(err)
		}
		return src
	})
}

// TestAuditReplicas appends from two replicas' logs at once, then stops
// the one leading: the other takes the lead and covers every entry.
func TestAuditReplicas(t *testing.T) {
	t.Parallel()
	s := open(t).(*postgres.Store)
	signer := audittest.Signer(t)
	logs := []*audit.Log{audittest.OpenLog(t, s.AuditLog(), signer), audittest.OpenLog(t, s.AuditLog(), signer)}
	var wg sync.WaitGroup
	for _, l := range logs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			audittest.AppendN(t, l, 100)
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for !logs[0].Leading() && !logs[1].Leading() {
		if time.Now().After(deadline) {
			t.Fatal("no replica leads")
		}
		time.Sleep(10 * time.Millisecond)
	}
	leader, other := logs[0], logs[1]
	if !leader.Leading() {
		leader, other = other, leader
	}
	if other.Leading() {
		t.Fatal("two replicas lead at once")
	}
	leader.Close()
	audittest.AppendN(t, other, 20)
	cp := audittest.WaitIntegrated(t, other)
	if cp.Size != 220 || !other.Leading() {
		t.Fatalf("after the leader stopped: checkpoint of %d, leading %v", cp.Size, other.Leading())
	}
	cv, _ := audit.NewCheckpointVerifier(signer.VerifierKey())
	src, err := other.Items(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r, err := audit.Verify(src, cv, nil)
	if err != nil || !r.OK() || r.Entries != 220 {
		t.Fatalf("verify: %+v %v", r, err)
	}
}

// TestAuditLease: one holder at a time, and a holder whose connection was
// cut learns that it no longer holds the lead.
func TestAuditLease(t *testing.T) {
	t.Parallel()
	s := open(t).(*postgres.Store)
	ctx := context.Background()
	lease, err := s.AuditLog().Lead(ctx)
	if err != nil || lease == nil {
		t.Fatalf("first Lead: %v %v", lease, err)
	}
	if err := lease.Check(ctx); err != nil {
		t.Fatalf("a held lease: %v", err)
	}
	if other, err := s.AuditLog().Lead(ctx); err != nil || other != nil {
		t.Fatalf("a second lead while the first holds: %v %v", other, err)
	}
	// Cut the holder's connection on the server side.
	conn, err := pgx.Connect(ctx, dsn(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objid = hashtext($1)::oid`,
		postgres.AuditLockName(s)); err != nil {
		t.Fatal(err)
	}
	if err := lease.Check(ctx); err == nil {
		t.Fatal("a lease whose connection was cut still checks out")
	}
	lease.Release()
	// pg_terminate_backend only signals the backend: its locks go when it
	// has exited.
	var next audit.Lease
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		next, err = s.AuditLog().Lead(ctx)
		if err != nil || next != nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || next == nil {
		t.Fatalf("Lead after the holder lost it: %v %v", next, err)
	}
	next.Release()
}
