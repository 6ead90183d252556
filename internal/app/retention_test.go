package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/filelog"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/sdk"
)

// A server with an archive moves its old segments there on its schedule
// and records each move in the log; decisions in archived segments still
// read, prove and verify through the API.
func TestRetentionThroughTheServer(t *testing.T) {
	t.Parallel()
	archiveDir := filepath.Join(t.TempDir(), "archive")
	w := apptest.Start(t, func(c *config.Config) {
		c.Audit.SegmentEntries = 16
		c.Audit.CheckpointInterval = 20 * time.Millisecond
		c.Audit.Archive = config.Archive{Dir: archiveDir, KeepLocal: time.Millisecond, Interval: time.Second}
		c.Monitor.Disabled = true // nothing reads the archived segments but the test
	})
	activate(t, w, map[string][]byte{"policy.rego": []byte("package warden.authz\nallow := true\n")})
	ctx := context.Background()
	const agent = "ai-agent://dev/ops/retained"
	c, err := sdk.NewClient(w.URL, agent, w.Register(t, agent, "reader"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var first decide.Decision
	for i := range 60 {
		d, err := w.App.Decide.Decide(ctx, decide.InProcess("gw", "warden"), &decide.Request{Token: tok.AccessToken, Action: "tools/call",
			Resource: decide.Resource{Kind: "mcp.tool", ID: "kb/search"}, Args: []byte(`{"q": "x"}`)})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = d
		}
	}
	// Wait for the schedule to archive the first two segments (without
	// reading any entry: a segment read stays open, and the test takes one
	// away below).
	fl, ok := w.App.Audit.Backend().(*filelog.Log)
	if !ok {
		t.Fatal("not the file log")
	}
	for deadline := time.Now().Add(20 * time.Second); len(fl.Archived()) < 2; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("nothing was archived")
		}
	}
	if _, err := os.Stat(filepath.Join(archiveDir, "seg-00000000000000000000.log")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(w.Config.Data, "audit", "seg-00000000000000000000.log")); !os.IsNotExist(err) {
		t.Fatalf("the archived segment is still in the data directory: %v", err)
	}
	if first.AuditIndex >= 16 {
		t.Fatalf("the first decision is entry %d, not in the first segment", first.AuditIndex)
	}
	// The decision reads from the archive, with its inclusion proof.
	cp, err := w.App.Audit.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", fmt.Sprintf("%s/v1/audit/proof/inclusion?index=%d&size=%d", w.URL, first.AuditIndex, cp.Size), nil)
	req.Header.Set("Authorization", "Bearer "+w.AdminToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("inclusion proof of an archived decision: %v %v", res, err)
	}
	res.Body.Close()
	// With an archived segment unreadable, the export is cut off, not
	// ended as if the log were whole.
	second := filepath.Join(archiveDir, "seg-00000000000000000016.log")
	if err := os.Rename(second, second+".away"); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(w.Config.Data, "audit", "archive-cache"))
	req, _ = http.NewRequest("GET", w.URL+"/v1/audit/export", nil)
	req.Header.Set("Authorization", "Bearer "+w.AdminToken)
	res, err = http.DefaultClient.Do(req)
	if err == nil {
		_, err = io.ReadAll(res.Body)
		res.Body.Close()
	}
	if err == nil {
		t.Fatal("an export missing an archived segment ended as if whole")
	}
	if err := os.Rename(second+".away", second); err != nil {
		t.Fatal(err)
	}

	// The whole log verifies through the server's export.
	req, _ = http.NewRequest("GET", w.URL+"/v1/audit/export", nil)
	req.Header.Set("Authorization", "Bearer "+w.AdminToken)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	cv, err := audit.NewCheckpointVerifier(w.App.Audit.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	r, err := audit.Verify(audit.ReadExport(res.Body), cv, nil)
	if err != nil || !r.OK() || r.Entries < 60 {
		t.Fatalf("verify: %+v %v", r, err)
	}
	// Each move is in the log itself.
	got, _, err := w.App.Audit.Query(ctx, audit.Query{Kind: audit.KindAdmin, After: -1, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	recorded := false
	for _, e := range got {
		recorded = recorded || e.Entry.Actor == "warden:retention" && e.Entry.Action == "audit.archive" && strings.HasPrefix(e.Entry.Target, "entries 0-")
	}
	if !recorded {
		t.Fatal("the move of entries 0- is not in the log")
	}
}

// A damaged audit log stops the start with its reason, not a crash.
func TestDamagedAuditLogRefusesToStart(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.Data = filepath.Join(t.TempDir(), "data")
	cfg.Server.Addr = "127.0.0.1:0"
	cfg.Identity.Issuer = "http://127.0.0.1:7070"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cfg.Data, "audit")
	os.MkdirAll(dir, 0o700)
	// A record whose checksum does not match, with more after it.
	os.WriteFile(filepath.Join(dir, "archived.log"), []byte{0, 0, 0, 4, 1, 2, 3, 4, 'j', 'u', 'n', 'k', 0, 0, 0, 1, 0, 0, 0, 0, 'x'}, 0o600)
	_, err := app.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("started on a damaged log: %v", err)
	}
}
