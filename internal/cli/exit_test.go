package cli_test

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/app/apptest"
)

// Scripts tell failures apart by the exit status: a usage mistake, a name
// that does not exist, a refusal, a server out of reach. Under --format
// json the error is JSON too.
func TestExitStatuses(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	admin := []string{"--server", w.URL, "--admin-token-file", filepath.Join(w.Config.Data, app.AdminTokenFileName)}
	wrong := filepath.Join(t.TempDir(), "wrong.token")
	if err := os.WriteFile(wrong, []byte("wdn_admin_"+strings.Repeat("z", 43)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now

	for _, c := range []struct {
		name string
		args []string
		want int
		says string
	}{
		{"a flag misspelt", []string{"agent", "list", "--sever", w.URL}, 2, "did you mean --server?"},
		{"a command unknown", []string{"agnet", "list"}, 2, "unknown command"},
		{"arguments missing", []string{"agent", "show"}, 2, "see warden agent show --help"},
		{"an agent that does not exist", append([]string{"agent", "show", "ai-agent://dev/nobody"}, admin...), 3, ""},
		{"a wrong admin token", []string{"agent", "list", "--server", w.URL, "--admin-token-file", wrong}, 4, ""},
		{"a server down", []string{"agent", "list", "--server", down, "--admin-token-file", wrong}, 5, "cannot reach the Warden server"},
		{"a bad argument", append([]string{"agent", "show", "not-an-agent-id"}, admin...), 2, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, errOut, code := run(t, c.args...)
			if code != c.want || !strings.Contains(errOut, c.says) {
				t.Fatalf("exit %d, want %d; stderr %q, want it to say %q", code, c.want, errOut, c.says)
			}
			_, errOut, code = run(t, append(c.args, "--format", "json")...)
			var e struct {
				Error struct {
					Code    string
					Message string
					Status  int
				}
			}
			if code != c.want || json.Unmarshal([]byte(errOut), &e) != nil || e.Error.Status != c.want || e.Error.Message == "" {
				t.Fatalf("--format json: exit %d, stderr %q", code, errOut)
			}
		})
	}
	if out, _, code := run(t, "--version"); code != 0 || !strings.HasPrefix(out, "warden ") {
		t.Errorf("--version: %d %q", code, out)
	}
}
