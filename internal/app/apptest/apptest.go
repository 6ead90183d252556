// Package apptest starts a complete Warden control plane for tests: a real
// store in a temporary directory (or PostgreSQL), the real HTTP API on a
// loopback port, and the bootstrap admin token.
package apptest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/sdk"
)

// Instance is a running control plane.
type Instance struct {
	URL        string
	App        *app.App
	Config     config.Config
	AdminToken string
}

// Start runs a control plane until the test ends. edit, when not nil, may
// change the configuration first (data directory and issuer are preset).
func Start(t testing.TB, edit func(*config.Config)) *Instance {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	cfg := config.Default()
	cfg.Data = filepath.Join(t.TempDir(), "warden-data")
	cfg.Server.Addr = ln.Addr().String()
	cfg.Identity.Issuer = url
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	tw := &testWriter{t: t}
	log := slog.New(slog.NewTextHandler(tw, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := app.New(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: a.Handler, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		a.Close()
		tw.done.Store(true)
	})
	inst := &Instance{URL: url, App: a, Config: cfg}
	if b, err := os.ReadFile(filepath.Join(cfg.Data, app.AdminTokenFileName)); err == nil {
		inst.AdminToken = strings.TrimSpace(string(b))
	}
	return inst
}

// testWriter sends log lines to the test log, so they show with failures
// only; after the test it drops them.
type testWriter struct {
	t    testing.TB
	done atomic.Bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}

// Register registers an agent directly with the registry and returns its new key.
func (i *Instance) Register(t testing.TB, id string, roles ...string) *sdk.Key {
	t.Helper()
	k := sdk.GenerateKey()
	if _, err := i.App.Registry.Register(context.Background(), "admin:test", identity.Registration{
		ID: id, Roles: roles, Owner: "team-test", PublicKey: k.PublicJWK()}); err != nil {
		t.Fatal(err)
	}
	return k
}

// Decision returns the audit entry of a decision, failing the test when
// the log has none.
func (i *Instance) Decision(t testing.TB, id string) *audit.Entry {
	t.Helper()
	ctx := context.Background()
	n, err := i.App.Audit.Size(ctx)
	if err != nil {
		t.Fatal(err)
	}
	data, err := i.App.Audit.Read(ctx, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range data {
		e, err := audit.DecodeEntry(d)
		if err != nil {
			t.Fatal(err)
		}
		if e.DecisionID == id {
			return e
		}
	}
	t.Fatalf("no audit entry for decision %s", id)
	return nil
}

// FreshPostgres makes a database of its own on the server dsn names, drops it
// when the test ends, and returns its DSN. The DSN's user needs CREATEDB.
func FreshPostgres(t testing.TB, dsn string) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	db := "warden_test_" + hex.EncodeToString(b)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		conn.Close(ctx)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Exec(ctx, "DROP DATABASE "+db+" WITH (FORCE)")
		conn.Close(ctx)
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + db
	return u.String()
}
