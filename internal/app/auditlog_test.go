package app_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/config"
)

// TestAuditBackendFollowsTheConfiguration: the embedded store keeps the
// audit log in files under the data directory; a PostgreSQL store keeps it
// in the database, beside nothing on disk. Either way an admin action is
// relayed from the store's record into the log.
func TestAuditBackendFollowsTheConfiguration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// store returns the store setting, or skips the case.
		store func(t *testing.T) string
		// stored says how much this backend keeps where it should: segment
		// files, or rows.
		stored func(t *testing.T, data, dsn string) int64
	}{
		{
			name:  "embedded store: files in the data directory",
			store: func(*testing.T) string { return "" },
			stored: func(t *testing.T, data, _ string) int64 {
				segs, _ := filepath.Glob(filepath.Join(data, "audit", "seg-*.log"))
				return int64(len(segs))
			},
		},
		{
			name: "PostgreSQL store: the database",
			store: func(t *testing.T) string {
				dsn := os.Getenv("WARDEN_TEST_POSTGRES")
				if dsn == "" {
					t.Skip("set WARDEN_TEST_POSTGRES to run the PostgreSQL case")
				}
				return apptest.FreshPostgres(t, dsn)
			},
			stored: func(t *testing.T, data, dsn string) int64 {
				if _, err := os.Stat(filepath.Join(data, "audit")); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("a PostgreSQL deployment made an audit directory on disk: %v", err)
				}
				conn, err := pgx.Connect(context.Background(), dsn)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close(context.Background())
				var n int64
				if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM audit_entries`).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dsn := tc.store(t)
			w := apptest.Start(t, func(c *config.Config) { c.Store = dsn })
			waitFor(t, func() error {
				if !w.App.Audit.Leading() {
					return errors.New("not leading yet")
				}
				return nil
			})
			const id = "ai-agent://dev/audited-where"
			w.Register(t, id, "r") // straight to the registry: the relay has not run
			if err := w.App.Relay.Sync(t.Context()); err != nil {
				t.Fatal(err)
			}
			res, _, err := w.App.Audit.Query(t.Context(), audit.Query{After: -1, Kind: audit.KindAdmin, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			relayed := false
			for _, r := range res {
				relayed = relayed || r.Entry.Action == "agent.register" && r.Entry.Target == id
			}
			if !relayed {
				t.Fatal("the registration was not relayed into the audit log")
			}
			if n := tc.stored(t, w.Config.Data, dsn); n == 0 {
				t.Fatal("the entries are not where the configuration puts them")
			}
		})
	}
}
