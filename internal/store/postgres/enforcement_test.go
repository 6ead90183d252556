package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/warden-run/warden/internal/store/postgres"
)

// An enforcement point registered before enforcement points had audiences
// keeps its credential through the migration, with no audience (not a
// deliberate none: Warden reports it) and the trust every point had.
func TestEnforcementPointsBeforeAudiencesMigrate(t *testing.T) {
	t.Parallel()
	d := dsn(t)
	ctx := context.Background()
	b := make([]byte, 6)
	rand.Read(b)
	schema := "t_" + hex.EncodeToString(b)
	conn, err := pgx.Connect(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
		conn.Close(ctx)
	})
	for _, q := range []string{"CREATE SCHEMA " + schema, "SET search_path TO " + schema,
		`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)`} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	// The schema as it was: every migration before the one that adds audiences.
	files, _ := filepath.Glob("migrations/*.sql")
	slices.Sort(files)
	for _, f := range files {
		name := filepath.Base(f)
		if strings.HasSuffix(name, "_enforcement_audience.sql") {
			break
		}
		sql, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, string(sql)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		v, _ := strconv.Atoi(name[:4])
		if _, err := conn.Exec(ctx, `INSERT INTO schema_migrations VALUES ($1, $2, now())`, v, strings.TrimSuffix(name[5:], ".sql")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, `INSERT INTO enforcement_points (name, credential_digest, description, created_at, created_by)
		VALUES ('old-gw', $1, 'registered long ago', now(), 'admin:bootstrap')`, make([]byte, 32)); err != nil {
		t.Fatal(err)
	}

	s, err := postgres.Open(ctx, postgres.Config{DSN: d, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ps, err := s.EnforcementPoints(ctx)
	if err != nil || len(ps) != 1 {
		t.Fatalf("listed %+v %v", ps, err)
	}
	p := ps[0]
	if p.Name != "old-gw" || !p.AudienceUnset() || p.NoAudience || !slices.Equal(p.Trust, []string{"source_ip", "session"}) || len(p.CredentialDigest) != 32 {
		t.Fatalf("migrated %+v", p)
	}
}
