package cli_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/cli"
)

// An export streams for as long as the log takes: the CLI bounds the wait
// for the answer to begin, not the answer. (A fixed bound on the whole
// exchange cut off the export of a large log.)
func TestExportStreamsPastTheAnswerTimeout(t *testing.T) {
	defer cli.SetAnswerTimeout(200 * time.Millisecond)()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		for i := range 8 {
			w.Write([]byte(`{"line":` + string(rune('0'+i)) + "}\n"))
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	}))
	defer srv.Close()
	tok := filepath.Join(t.TempDir(), "admin.token")
	os.WriteFile(tok, []byte("an-admin-token"), 0o600)
	out, errOut, code := run(t, "audit", "export", "--server", srv.URL, "--admin-token-file", tok)
	if code != 0 || strings.Count(out, "\n") != 8 {
		t.Fatalf("export: exit %d, %d lines: %s", code, strings.Count(out, "\n"), errOut)
	}
}

// An agent's large entries do not make the log unreadable to the CLI:
// a page of entries is bounded in bytes, and tail follows the pages.
// (Pages of a thousand large entries overran what the CLI reads of one.)
func TestTailLargeEntries(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	big := `{"blob":"` + strings.Repeat("x", 60<<10) + `"}`
	const n = 400 // about 24 MB
	for i := range n {
		if _, err := w.App.Audit.Append(t.Context(), &audit.Entry{Kind: audit.KindDecision, Time: time.Now(), Agent: "ai-agent://dev/bulky",
			Action: "tools/call", Outcome: "deny", DecisionID: "dec_" + strconv.Itoa(i), Input: json.RawMessage(big)}); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, code := run(t, "audit", "tail", "-n", "1000", "--agent", "ai-agent://dev/bulky", "--format", "json",
		"--server", w.URL, "--admin-token-file", filepath.Join(w.Config.Data, app.AdminTokenFileName))
	if code != 0 || strings.Count(out, "\n") != n {
		t.Fatalf("tail: exit %d, %d lines, want %d: %s", code, strings.Count(out, "\n"), n, errOut)
	}
}
