package cli_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
