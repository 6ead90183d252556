package pglog_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/audittest"
	"github.com/warden-run/warden/internal/audit/pglog"
	"github.com/warden-run/warden/internal/store/postgres"
)

// dsn returns the test database, or skips the test with the reason.
func dsn(t testing.TB) string {
	d := os.Getenv("WARDEN_TEST_POSTGRES")
	if d == "" {
		t.Skip("PostgreSQL audit log skipped: set WARDEN_TEST_POSTGRES to a DSN (postgres://user:pass@127.0.0.1:5432/warden_test) to run it")
	}
	return d
}

// database is one test's schema, made by the store's migrations as a
// server makes it, and dropped when the test ends.
type database struct {
	store  *postgres.Store
	schema string
}

func open(t testing.TB) database {
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
	return database{store: s, schema: schema}
}

// backend opens the audit log backend on the schema, as a replica does.
func (db database) backend(t testing.TB) *pglog.Log {
	t.Helper()
	l, err := pglog.Open(context.Background(), pglog.Config{Schema: db.schema}, db.store.Pool())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestConformance(t *testing.T) {
	audittest.Run(t, func(t *testing.T) func(t *testing.T) audit.Backend {
		db := open(t)
		return func(t *testing.T) audit.Backend { return db.backend(t) }
	})
}

// TestOpenRefuses: no pool, a schema name that cannot be one, or a database
// without the audit tables is an error at Open, not at the first append.
func TestOpenRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := open(t)
	// Another schema, migrated by the store, whose audit tables are taken away.
	bare := open(t)
	if _, err := bare.store.Pool().Exec(ctx, `DROP TABLE audit_head`); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  pglog.Config
		pool *pgxpool.Pool
	}{
		{"no pool", pglog.Config{Schema: db.schema}, nil},
		{"a schema name that is not one", pglog.Config{Schema: `x"; DROP`}, db.store.Pool()},
		{"no audit tables", pglog.Config{Schema: bare.schema}, bare.store.Pool()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := pglog.Open(ctx, tc.cfg, tc.pool); err == nil {
				t.Fatal("opened")
			}
		})
	}
}

// TestTamperingIsDetected tampers with the tables the way someone with
// write access to the database (but not the checkpoint key) could, and
// verifies what the server would export.
func TestTamperingIsDetected(t *testing.T) {
	signer := audittest.Signer(t)
	ref, trusted := audittest.BuildReference(t, open(t).backend(t), signer)
	audittest.RunTamper(t, ref, trusted, signer, func(t *testing.T, items []audit.Item) audit.Source {
		be := open(t).backend(t)
		ctx := context.Background()
		var n int64
		for _, it := range items {
			if it.Checkpoint {
				if err := be.AddCheckpoint(ctx, audit.StoredCheckpoint{Size: audittest.NoteSize(t, it.Data), Signed: it.Data, Time: time.Now()}); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := pglog.InsertRawEntry(ctx, be, n, it.Data); err != nil {
				t.Fatal(err)
			}
			n++
		}
		src, err := audit.ReadBackend(ctx, be)
		if err != nil {
			t.Fatal(err)
		}
		return src
	})
}

// TestReplicas appends from two replicas' logs at once, then stops
// the one leading: the other takes the lead and covers every entry.
func TestReplicas(t *testing.T) {
	t.Parallel()
	db := open(t)
	signer := audittest.Signer(t)
	// Two replicas: each its own backend on the same tables.
	logs := []*audit.Log{audittest.OpenLog(t, db.backend(t), signer), audittest.OpenLog(t, db.backend(t), signer)}
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

// TestLease: one holder at a time, and a holder whose connection was
// cut learns that it no longer holds the lead.
func TestLease(t *testing.T) {
	t.Parallel()
	be := open(t).backend(t)
	ctx := context.Background()
	lease, err := be.Lead(ctx)
	if err != nil || lease == nil {
		t.Fatalf("first Lead: %v %v", lease, err)
	}
	if err := lease.Check(ctx); err != nil {
		t.Fatalf("a held lease: %v", err)
	}
	if other, err := be.Lead(ctx); err != nil || other != nil {
		t.Fatalf("a second lead while the first holds: %v %v", other, err)
	}
	// Cut the holder's connection on the server side.
	conn, err := pgx.Connect(ctx, dsn(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objid = hashtext($1)::oid`,
		pglog.LockName(be)); err != nil {
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
		next, err = be.Lead(ctx)
		if err != nil || next != nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || next == nil {
		t.Fatalf("Lead after the holder lost it: %v %v", next, err)
	}
	next.Release()
}

// TestLeadLockKeepsItsName: the lead lock has the name the store's own
// backend gave it before the backend moved here ("warden.audit.lead." and
// the store's notification channel, warden_changes[_<schema>]), so that
// replicas of both releases never lead at once during a rolling upgrade.
func TestLeadLockKeepsItsName(t *testing.T) {
	t.Parallel()
	db := open(t)
	if got, want := pglog.LockName(db.backend(t)), "warden.audit.lead.warden_changes_"+db.schema; got != want {
		t.Fatalf("lead lock %q, want %q", got, want)
	}
	// A deployment names no schema.
	plain, err := pglog.Open(context.Background(), pglog.Config{}, db.store.Pool())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := pglog.LockName(plain), "warden.audit.lead.warden_changes"; got != want {
		t.Fatalf("lead lock %q, want %q", got, want)
	}
}
