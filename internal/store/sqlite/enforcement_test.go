package sqlite_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/warden-run/warden/internal/store/sqlite"
)

// An enforcement point registered before enforcement points had audiences
// keeps its credential through the migration, with no audience (not a
// deliberate none: Warden reports it) and the trust every point had.
func TestEnforcementPointsBeforeAudiencesMigrate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "warden.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	// The schema as it was: every migration before the one that adds audiences.
	files, _ := filepath.Glob("migrations/*.sql")
	slices.Sort(files)
	for _, f := range files {
		name := filepath.Base(f)
		if strings.HasSuffix(name, "_enforcement_audience.sql") {
			break
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, string(b)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		v, _ := strconv.Atoi(name[:4])
		if _, err := db.ExecContext(ctx, `INSERT INTO schema_migrations VALUES (?, ?, 0)`, v, strings.TrimSuffix(name[5:], ".sql")); err != nil {
			t.Fatal(err)
		}
	}
	digest := make([]byte, 32)
	if _, err := db.ExecContext(ctx, `INSERT INTO enforcement_points (name, credential_digest, description, created_at, created_by)
		VALUES ('old-gw', ?, 'registered long ago', 0, 'admin:bootstrap')`, digest); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := sqlite.Open(ctx, sqlite.Config{Path: path})
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
