package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/warden-run/warden/internal/store"
	"github.com/warden-run/warden/internal/store/postgres"
	"github.com/warden-run/warden/internal/store/storetest"
)

// dsn returns the test database, or skips the test with the reason.
func dsn(t *testing.T) string {
	d := os.Getenv("WARDEN_TEST_POSTGRES")
	if d == "" {
		t.Skip("PostgreSQL conformance skipped: set WARDEN_TEST_POSTGRES to a DSN (postgres://user:pass@127.0.0.1:5432/warden_test) to run it")
	}
	return d
}

// open makes a fresh schema for one test and drops it afterwards.
func open(t *testing.T) store.Store {
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

func TestConformance(t *testing.T) { storetest.Run(t, open) }
