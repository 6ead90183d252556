package cli_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/store"
)

// warden pep register needs an audience or --no-audience, and warden pep
// list reports enforcement points registered before audiences existed.
func TestPEPAudiences(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	g := []string{"--server", w.URL, "--admin-token-file", filepath.Join(w.Config.Data, app.AdminTokenFileName)}
	dir := t.TempDir()
	pep := func(args ...string) (string, string, int) {
		return run(t, append(append([]string{"pep"}, args...), g...)...)
	}

	for _, tc := range []struct {
		name string
		args []string
		says string
	}{
		{"no audience", []string{"register", "gw-a", "--out", filepath.Join(dir, "a.cred")}, "--audience URL is required"},
		{"both", []string{"register", "gw-b", "--audience", "warden", "--no-audience", "--out", filepath.Join(dir, "b.cred")}, "one or the other"},
		{"an unknown trust", []string{"register", "gw-c", "--audience", "warden", "--trust", "region", "--out", filepath.Join(dir, "c.cred")}, `trust "region"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := pep(tc.args...)
			if code == 0 || !strings.Contains(errOut, tc.says) {
				t.Fatalf("exit %d, stderr %q; want an error saying %s", code, errOut, tc.says)
			}
			if _, err := os.Stat(tc.args[len(tc.args)-1]); err == nil {
				t.Fatal("a refused registration left its credential file")
			}
		})
	}
	if _, errOut, code := pep("register", "gw-any", "--no-audience", "--out", filepath.Join(dir, "any.cred")); code != 0 || !strings.Contains(errOut, "accept an agent token issued for any resource") {
		t.Fatalf("--no-audience: exit %d, stderr %q", code, errOut)
	}
	if _, errOut, code := pep("register", "gw-eu", "--audience", "https://gw.eu.example/mcp", "--trust", "source_ip,session", "--out", filepath.Join(dir, "eu.cred")); code != 0 || errOut != "" {
		t.Fatalf("--audience: exit %d, stderr %q", code, errOut)
	}

	// One from before audiences, as the upgrade leaves it.
	digest := sha256.Sum256([]byte("an old credential"))
	if err := w.App.Store.RegisterEnforcementPoint(context.Background(), store.EnforcementPoint{Name: "gw-old", CredentialDigest: digest[:],
		Trust: []string{"source_ip", "session"}, CreatedAt: store.Now(), CreatedBy: "admin:bootstrap"},
		store.Event{Time: store.Now(), Actor: "admin:bootstrap", Action: "enforcement_point.register", Target: "pep:gw-old"}); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := pep("list")
	if code != 0 || !strings.Contains(errOut, "warning: gw-old was registered before enforcement points had audiences") || strings.Contains(errOut, "gw-eu") {
		t.Fatalf("list: exit %d, stderr %q", code, errOut)
	}
	for _, row := range []string{"gw-any  active  (none)", "gw-eu   active  https://gw.eu.example/mcp  source_ip,session", "gw-old  active  (unset)"} {
		if !strings.Contains(out, row) {
			t.Errorf("list has no row %q:\n%s", row, out)
		}
	}
	out, _, _ = pep("list", "--format", "json")
	var list struct {
		EnforcementPoints []struct {
			Name          string   `json:"name"`
			Audience      string   `json:"audience"`
			NoAudience    bool     `json:"no_audience"`
			AudienceUnset bool     `json:"audience_unset"`
			Trust         []string `json:"trust"`
		} `json:"enforcement_points"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.EnforcementPoints) != 3 ||
		!list.EnforcementPoints[0].NoAudience || list.EnforcementPoints[1].Audience != "https://gw.eu.example/mcp" || !list.EnforcementPoints[2].AudienceUnset {
		t.Fatalf("list --format json: %s (%v)", out, err)
	}
}
