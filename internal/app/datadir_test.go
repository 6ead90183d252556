package app_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/config"
)

// A data directory others can use holds the master key and the admin
// token for them: the server refuses it, says how to fix it, and changes
// nothing.
func TestDataDirectoryOpenToOthersIsRefused(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		mode os.FileMode
		// existing is whether a deployment started there before.
		existing bool
	}{
		{"new deployment, listable by all", 0o755, false},
		{"new deployment, group may enter", 0o710, false},
		{"existing deployment, writable by all", 0o777, true},
		{"existing deployment, readable by group", 0o740, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg := config.Default()
			cfg.Data = filepath.Join(t.TempDir(), "data")
			cfg.Server.Addr = "127.0.0.1:0"
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			if c.existing {
				a, err := app.New(context.Background(), cfg, quiet())
				if err != nil {
					t.Fatal(err)
				}
				a.Close()
			} else if err := os.Mkdir(cfg.Data, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(cfg.Data, c.mode); err != nil {
				t.Fatal(err)
			}
			entries, _ := os.ReadDir(cfg.Data)
			a, err := app.New(context.Background(), cfg, quiet())
			if err == nil {
				a.Close()
				t.Fatalf("a data directory of mode %04o was accepted", c.mode)
			}
			if !strings.Contains(err.Error(), "open to others") || !strings.Contains(err.Error(), "chmod 700 "+cfg.Data) {
				t.Fatalf("the error does not say what is wrong and how to fix it: %v", err)
			}
			st, _ := os.Stat(cfg.Data)
			after, _ := os.ReadDir(cfg.Data)
			if st.Mode().Perm() != c.mode || len(after) != len(entries) {
				t.Fatalf("the refused directory changed: mode %04o, %d entries, was %04o, %d", st.Mode().Perm(), len(after), c.mode, len(entries))
			}
			// The fix the error names is enough.
			if err := os.Chmod(cfg.Data, 0o700); err != nil {
				t.Fatal(err)
			}
			a, err = app.New(context.Background(), cfg, quiet())
			if err != nil {
				t.Fatalf("after chmod 700: %v", err)
			}
			a.Close()
		})
	}
}

// An admin token file that others can read makes them administrators:
// the server refuses to start on it, as for the master key.
func TestAdminTokenFileReadableByOthersIsRefused(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.Data = filepath.Join(t.TempDir(), "data")
	cfg.Server.Addr = "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := app.New(context.Background(), cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	path := filepath.Join(cfg.Data, app.AdminTokenFileName)
	tok, _ := os.ReadFile(path)
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		a, err := app.New(context.Background(), cfg, quiet())
		if err == nil {
			a.Close()
			t.Fatalf("the server started with admin.token of mode %04o", mode)
		}
		if msg := err.Error(); !strings.Contains(msg, "readable by others") || !strings.Contains(msg, "chmod 600 "+path) || strings.Contains(msg, strings.TrimSpace(string(tok))) {
			t.Fatalf("mode %04o: %v", mode, err)
		}
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err = app.New(context.Background(), cfg, quiet())
	if err != nil {
		t.Fatalf("after chmod 600: %v", err)
	}
	a.Close()
}
