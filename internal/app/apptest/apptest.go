// Package apptest starts a complete Warden control plane for tests: a real
// store in a temporary directory (or PostgreSQL), the real HTTP API on a
// loopback port, and the bootstrap admin token.
package apptest

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/config"
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
