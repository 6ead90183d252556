package app_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/policy"
)

// With --policies DIR --watch, a change that passes its tests goes live;
// one that does not leaves the last good version live.
func TestWatchedPolicyDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	digest := func() string {
		t.Helper()
		b, err := policy.LoadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		return b.Digest()
	}
	write("policy.rego", "package warden.authz\n\nallow := false\n")
	first := digest()
	w := apptest.Start(t, func(c *config.Config) { c.Policy.Dir, c.Policy.Watch = dir, true })
	if got := w.App.Policies.Live().State.Active; got != first {
		t.Fatalf("at start the active version is %q, want the directory's %s", got, first)
	}
	waitActive := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for w.App.Policies.Live().State.Active != want {
			if time.Now().After(deadline) {
				t.Fatalf("active %s, want %s", w.App.Policies.Live().State.Active, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	write("policy.rego", "package warden.authz\n\nallow := true\n")
	second := digest()
	waitActive(second)

	// A failing test: not activated, not stored.
	write("policy_test.rego", "package warden.authz\n\ntest_closed if not allow\n")
	failing := digest()
	time.Sleep(1500 * time.Millisecond) // three passes of the watcher
	if got := w.App.Policies.Live().State.Active; got != second {
		t.Fatalf("a failing bundle went live: %s", got)
	}
	if _, err := w.App.Policies.Version(t.Context(), failing); err == nil {
		t.Fatal("a failing bundle was stored")
	}

	// Fixed: live.
	write("policy.rego", "package warden.authz\n\nallow := false\n")
	waitActive(digest())
}

// A policy directory that does not pass its tests stops the server at start.
func TestPolicyDirectoryMustPassAtStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "policy.rego"), []byte("package warden.authz\n\nallow := true\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "policy_test.rego"), []byte("package warden.authz\n\ntest_closed if not allow\n"), 0o644)
	cfg := config.Default()
	cfg.Data = filepath.Join(t.TempDir(), "data")
	cfg.Policy.Dir = dir
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := app.New(context.Background(), cfg, quiet())
	if err == nil {
		a.Close()
		t.Fatal("the server started on a bundle whose tests fail")
	}
	if !strings.Contains(err.Error(), "tests failed") {
		t.Fatalf("start: %v, want the tests named", err)
	}
}

// The policy directory is read as a bundle: a link out of it stops the
// server at start, and a link added while it is watched is never pushed.
func TestPolicyDirectoryRefusesLinksOut(t *testing.T) {
	t.Parallel()
	outside := filepath.Join(t.TempDir(), "secrets.yaml")
	if err := os.WriteFile(outside, []byte("token: app-outside-secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Run("at start", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "policy.rego"), []byte("package warden.authz\n\nallow := true\n"), 0o644)
		if err := os.Symlink(outside, filepath.Join(dir, "data.yaml")); err != nil {
			t.Fatal(err)
		}
		cfg := config.Default()
		cfg.Data = filepath.Join(t.TempDir(), "data") // t.TempDir() itself is open to others
		cfg.Policy.Dir = dir
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		a, err := app.New(context.Background(), cfg, quiet())
		if err == nil {
			a.Close()
			t.Fatal("the server started on a bundle that links out of its directory")
		}
		if !strings.Contains(err.Error(), "data.yaml is a symbolic link") || strings.Contains(err.Error(), "app-outside-secret") {
			t.Fatalf("start: %v, want the link named and nothing of its target", err)
		}
	})
	t.Run("watched", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "policy.rego"), []byte("package warden.authz\n\nallow := true\n"), 0o644)
		w := apptest.Start(t, func(c *config.Config) { c.Policy.Dir, c.Policy.Watch = dir, true })
		first := w.App.Policies.Live().State.Active
		if err := os.Symlink(outside, filepath.Join(dir, "data.yaml")); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "policy.rego"), []byte("package warden.authz\n\nallow := false\n"), 0o644)
		time.Sleep(1500 * time.Millisecond) // three passes of the watcher
		if got := w.App.Policies.Live().State.Active; got != first {
			t.Fatalf("a bundle linking out went live: %s", got)
		}
		vs, err := w.App.Policies.Versions(t.Context(), "", 100)
		if err != nil || len(vs) != 1 {
			t.Fatalf("versions %v (err %v), want only the first", vs, err)
		}
	})
}
