package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/cli"
)

// run runs one warden command line in-process.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = cli.Main(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), code
}

// TestWalkThrough is the README walk-through, command by command, against a
// real server.
func TestWalkThrough(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	dir := t.TempDir()
	g := []string{"--server", w.URL, "--admin-token-file", filepath.Join(w.Config.Data, app.AdminTokenFileName)}
	must := func(args ...string) string {
		t.Helper()
		out, errOut, code := run(t, append(args, g...)...)
		if code != 0 {
			t.Fatalf("warden %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	fails := func(want string, args ...string) {
		t.Helper()
		out, errOut, code := run(t, append(args, g...)...)
		if code == 0 || !strings.Contains(errOut, want) {
			t.Fatalf("warden %s: exit %d, stderr %q, want an error containing %q (stdout %q)", strings.Join(args, " "), code, errOut, want, out)
		}
	}
	const id = "ai-agent://prod/finance/trading-optimizer"
	key := filepath.Join(dir, "agent.jwk")

	out := must("agent", "keygen", "--out", key)
	if !strings.Contains(out, "agent.pub.jwk") {
		t.Fatalf("keygen: %s", out)
	}
	if st, _ := os.Stat(key); st.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %v", st.Mode())
	}
	fails("exists", "agent", "keygen", "--out", key) // never overwrites a key
	must("agent", "register", id, "--role", "trader,reader", "--owner", "team-quant", "--pubkey", filepath.Join(dir, "agent.pub.jwk"), "--attr", "desk=fx")
	fails("private key", "agent", "register", "ai-agent://prod/x", "--role", "r", "--owner", "o", "--pubkey", key)
	fails("invalid agent id", "agent", "register", "ai-agent://Prod/x", "--role", "r", "--owner", "o", "--pubkey", filepath.Join(dir, "agent.pub.jwk"))
	fails("--attr", "agent", "register", "ai-agent://prod/y", "--role", "r", "--owner", "o", "--pubkey", filepath.Join(dir, "agent.pub.jwk"), "--attr", "novalue")

	if out := must("agent", "list"); !strings.Contains(out, id) || !strings.Contains(out, "reader,trader") {
		t.Fatalf("list: %s", out)
	}
	var shown map[string]any
	if err := json.Unmarshal([]byte(must("agent", "show", id, "--format", "json")), &shown); err != nil || shown["owner"] != "team-quant" {
		t.Fatalf("show --format json: %v %v", shown, err)
	}

	tok := strings.TrimSpace(must("token", "--agent", id, "--key", key))
	if strings.Count(tok, ".") != 2 {
		t.Fatalf("token: %q", tok)
	}
	if _, err := w.App.Verifier.Verify(t.Context(), tok); err != nil {
		t.Fatalf("the CLI's token does not verify: %v", err)
	}

	must("agent", "disable", id, "--reason", "walk-through")
	if _, err := w.App.Verifier.Verify(t.Context(), tok); err == nil {
		t.Fatal("a disabled agent's token still verifies")
	}
	fails("invalid_client", "token", "--agent", id, "--key", key)
	must("agent", "enable", id)
	tok = strings.TrimSpace(must("token", "--agent", id, "--key", key))

	must("agent", "revoke", id, "--reason", "walk-through")
	if _, err := w.App.Verifier.Verify(t.Context(), tok); err == nil {
		t.Fatal("a revoked agent's token still verifies")
	}

	newKey := filepath.Join(dir, "next.jwk")
	must("agent", "keygen", "--out", newKey)
	if out := must("agent", "rotate-key", id, "--pubkey", filepath.Join(dir, "next.pub.jwk"), "--grace", "0s"); strings.Count(out, "(active") != 1 {
		t.Fatalf("rotate-key with no grace leaves one active key: %s", out)
	}
	fails("invalid_client", "token", "--agent", id, "--key", key)
	tok = strings.TrimSpace(must("token", "--agent", id, "--key", newKey))

	var tj map[string]any
	if err := json.Unmarshal([]byte(must("token", "--agent", id, "--key", newKey, "--format", "json", "--scope", "reader", "--dpop")), &tj); err != nil ||
		tj["scope"] != "reader" || tj["token_type"] != "DPoP" {
		t.Fatalf("token --format json: %v %v", tj, err)
	}

	if out := must("keys", "rotate"); !strings.Contains(out, "now signing with") {
		t.Fatalf("keys rotate: %s", out)
	}
	if out := must("keys", "list"); strings.Count(out, "EdDSA") != 2 {
		t.Fatalf("keys list after a rotation: %s", out)
	}
	if _, err := w.App.Verifier.Verify(t.Context(), tok); err != nil {
		t.Fatalf("a token signed before the issuer key rotation: %v", err)
	}
	must("keys", "rotate", "--retire-now")
	if _, err := w.App.Verifier.Verify(t.Context(), tok); err == nil {
		t.Fatal("a token signed by a key retired at once still verifies")
	}

	out = must("events", "--target", id)
	for _, action := range []string{"agent.register", "agent.status", "agent.revoke", "agent.rotate_key"} {
		if !strings.Contains(out, action) || !strings.Contains(out, "admin:bootstrap") {
			t.Fatalf("events lack %s: %s", action, out)
		}
	}
	// The audit log holds every admin action above, verifies, and proves them.
	if out := must("audit", "tail", "-n", "100"); !strings.Contains(out, "agent.register") || !strings.Contains(out, "agent.rotate_key") {
		t.Fatalf("audit tail: %s", out)
	}
	waitAudited(t, w)
	if out := must("audit", "verify"); !strings.HasPrefix(out, "OK: ") {
		t.Fatalf("audit verify: %s", out)
	}
	keyFile := filepath.Join(dir, "checkpoint.pub")
	os.WriteFile(keyFile, []byte(must("audit", "key")), 0o644)
	export := filepath.Join(dir, "log.jsonl")
	os.WriteFile(export, []byte(must("audit", "export")), 0o600)
	witness := filepath.Join(dir, "witness")
	if out := must("audit", "verify", "--from", export, "--key", keyFile, "--witness", witness); !strings.HasPrefix(out, "OK: ") {
		t.Fatalf("audit verify --from: %s", out)
	}
	if out := must("audit", "proof", "--index", "1"); !strings.Contains(out, "proof verified") {
		t.Fatalf("audit proof: %s", out)
	}
	// An export with one entry changed fails, and says where.
	lines := strings.Split(string(must("audit", "export")), "\n")
	changed := false
	for i := 1; i < len(lines) && !changed; i++ {
		if strings.Contains(lines[i], `"actor":"admin:bootstrap"`) {
			lines[i] = strings.Replace(lines[i], `"actor":"admin:bootstrap"`, `"actor":"admin:someone-else"`, 1)
			changed = true
		}
	}
	os.WriteFile(export, []byte(strings.Join(lines, "\n")), 0o600)
	out, _, code := run(t, "audit", "verify", "--from", export, "--key", keyFile)
	if code != 1 || !strings.Contains(out, "FAILED: first bad index") {
		t.Fatalf("a tampered export: exit %d, %s", code, out)
	}
	// Not being able to verify is another status than a log that failed.
	out, errOut, code := run(t, "audit", "verify", "--from", filepath.Join(dir, "missing.jsonl"), "--key", keyFile)
	if code != 2 || out != "" || !strings.Contains(errOut, "missing.jsonl") {
		t.Fatalf("verify of a missing export: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, errOut, code := run(t, "audit", "verify", "--no-such-flag"); code != 2 || !strings.Contains(errOut, "no-such-flag") {
		t.Fatalf("verify with an unknown flag: exit %d, stderr %q", code, errOut)
	}

	fails("not_found", "agent", "show", "ai-agent://prod/nobody")
	fails("--format", "agent", "list", "--format", "yaml")
}

// waitAudited waits until a checkpoint covers the whole audit log.
func waitAudited(t *testing.T, w *apptest.Instance) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		size, _ := w.App.Audit.Size(t.Context())
		cp, err := w.App.Audit.Checkpoint(t.Context())
		if err == nil && cp.Size == size {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint covers the audit log")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAdminTokenFileMustBePrivate(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "admin.token")
	os.WriteFile(path, []byte("wdn_admin_x\n"), 0o644)
	_, errOut, code := run(t, "agent", "list", "--admin-token-file", path, "--server", "http://127.0.0.1:1")
	if code == 0 || !strings.Contains(errOut, "readable by others") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

func TestServeCommand(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	data := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Main(ctx, []string{"serve", "--addr", addr, "--data", data, "--log-level", "warn"}, &out, &errOut)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not come up: %v\n%s", err, errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exited %d: %s", code, errOut.String())
	}
	tokenFile := filepath.Join(data, "admin.token")
	if !strings.Contains(errOut.String(), tokenFile) {
		t.Fatalf("serve did not print where the admin token is: %s", errOut.String())
	}
	b, _ := os.ReadFile(tokenFile)
	if strings.Contains(errOut.String(), strings.TrimSpace(string(b))) {
		t.Fatal("serve printed the admin token itself")
	}
}

func TestServeRefusesBadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "warden.yaml")
	os.WriteFile(cfgFile, []byte("identity:\n  token_ttl: 20m\n  unknown_key: 1\n"), 0o600)
	_, errOut, code := run(t, "serve", "--config", cfgFile, "--data", dir)
	if code == 0 || !strings.Contains(errOut, "unknown_key") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	os.WriteFile(cfgFile, []byte("identity:\n  token_ttl: 20m\n"), 0o600)
	_, errOut, code = run(t, "serve", "--config", cfgFile, "--data", dir)
	if code == 0 || !strings.Contains(errOut, "token_ttl") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	_, errOut, code = run(t, "serve", "--data", dir, "--addr", "0.0.0.0:0")
	if code == 0 || !strings.Contains(errOut, "not a loopback address") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

// warden mcp wrap refuses an enforcement point credential file that
// others can read, or that is empty.
func TestWrapCredentialFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := filepath.Join(dir, "agent.jwk")
	if _, _, code := run(t, "agent", "keygen", "--out", key); code != 0 {
		t.Fatal("keygen failed")
	}
	for name, c := range map[string]struct {
		body string
		mode os.FileMode
		says string
	}{"open": {"wdn_pep_x\n", 0o644, "readable by others"}, "empty": {"\n", 0o600, "is empty"}} {
		cred := filepath.Join(dir, name+".cred")
		os.WriteFile(cred, []byte(c.body), c.mode)
		os.Chmod(cred, c.mode)
		_, errOut, code := run(t, "--server", "http://127.0.0.1:1", "mcp", "wrap", "--agent", "ai-agent://dev/me", "--key", key, "--credential", cred, "--trust", "trusted", "--", "true")
		if code == 0 || !strings.Contains(errOut, c.says) || strings.Contains(errOut, "wdn_pep_x") {
			t.Errorf("%s: exit %d: %s", name, code, errOut)
		}
	}
}

// warden serve refuses a data directory others can use, and an admin
// token file others can read, and says how to fix each.
func TestServeRefusesExposedSecrets(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	os.Mkdir(data, 0o755)
	os.Chmod(data, 0o755)
	_, errOut, code := run(t, "serve", "--data", data, "--addr", "127.0.0.1:0")
	if code == 0 || !strings.Contains(errOut, "open to others") || !strings.Contains(errOut, "chmod 700 "+data) {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	os.Chmod(data, 0o700)
	token := filepath.Join(data, "admin.token")
	os.WriteFile(token, []byte("wdn_admin_for_this_test\n"), 0o644)
	os.Chmod(token, 0o644)
	_, errOut, code = run(t, "serve", "--data", data, "--addr", "127.0.0.1:0")
	if code == 0 || !strings.Contains(errOut, "readable by others") || !strings.Contains(errOut, "chmod 600 "+token) || strings.Contains(errOut, "wdn_admin_for_this_test") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

// The admin token never crosses a network in the clear, nor follows a
// redirect. (Both were done: --server http://remote sent it, and a
// redirect to the same host carried it on.)
func TestAdminTokenStaysOnSafeRoutes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "admin.token"), []byte("wdn_admin_test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := run(t, "--server", "http://192.0.2.10:7070", "--data", dir, "agent", "list")
	if code == 0 || !strings.Contains(errOut, "https://") || strings.Contains(errOut, "wdn_admin_test") {
		t.Fatalf("plain HTTP off this machine: exit %d: %s", code, errOut)
	}
	var followed atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			followed.Store(true)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	_, errOut, code = run(t, "--server", srv.URL, "--data", dir, "agent", "list")
	if code == 0 || followed.Load() {
		t.Fatalf("a redirect: followed %v, exit %d: %s", followed.Load(), code, errOut)
	}
}

// Under --log-format json every line warden serve writes is JSON: the
// first start's messages, and the reason it could not start.
func TestServeLogsJSON(t *testing.T) {
	t.Parallel()
	allJSON := func(t *testing.T, stderr string) []map[string]any {
		t.Helper()
		var lines []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("a line that is not JSON: %q", l)
			}
			lines = append(lines, m)
		}
		return lines
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	data := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Main(ctx, []string{"serve", "--addr", addr, "--data", data, "--log-format", "json"}, &out, &errOut)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not come up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exited %d: %s", code, errOut.String())
	}
	told := false
	for _, l := range allJSON(t, errOut.String()) {
		told = told || l["path"] == filepath.Join(data, "admin.token")
	}
	if !told {
		t.Errorf("no line says where the admin token is: %s", errOut.String())
	}

	_, stderr, code := run(t, "serve", "--data", t.TempDir(), "--addr", "0.0.0.0:0", "--log-format", "json")
	lines := allJSON(t, stderr)
	last := lines[len(lines)-1]
	if code == 0 || last["level"] != "ERROR" || !strings.Contains(fmt.Sprint(last["err"]), "not a loopback address") {
		t.Fatalf("exit %d, last line %v", code, last)
	}
}

// A first start that fails leaves no data directory behind, so that the
// next start is a first start again: when the address is taken, when the
// store cannot be reached, and when the embedded store was made but the
// master key could not be.
func TestFailedFirstStartLeavesNothing(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	notADir := filepath.Join(dir, "a-file")
	os.WriteFile(notADir, []byte("x"), 0o600)
	cfgFile := filepath.Join(dir, "warden.yaml")
	os.WriteFile(cfgFile, []byte("identity:\n  master_key_file: "+filepath.Join(notADir, "master.key")+"\n"), 0o600)
	for _, c := range []struct {
		name string
		args []string
		says string
	}{
		{"the address taken", []string{"--addr", taken.Addr().String()}, "address already in use"},
		{"the store out of reach", []string{"--addr", "127.0.0.1:0", "--store", "postgres://nobody:x@127.0.0.1:1/none"}, "postgres"},
		{"no master key", []string{"--addr", "127.0.0.1:0", "--config", cfgFile}, "master key"},
		{"no certificate", []string{"--addr", "127.0.0.1:0", "--tls-cert", filepath.Join(dir, "none.crt"), "--tls-key", filepath.Join(dir, "none.key")}, "TLS"},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-"))
			_, errOut, code := run(t, append([]string{"serve", "--data", data}, c.args...)...)
			if code == 0 || !strings.Contains(errOut, c.says) {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if _, err := os.Stat(data); err == nil {
				entries, _ := os.ReadDir(data)
				t.Fatalf("the failed start left %s with %d entries", data, len(entries))
			}
		})
	}
}

// agent update changes roles, owner and attributes and revokes the live
// tokens; agent delete ends an agent for good, recorded, and needs --yes.
func TestAgentUpdateAndDelete(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	dir := t.TempDir()
	g := []string{"--server", w.URL, "--admin-token-file", filepath.Join(w.Config.Data, app.AdminTokenFileName)}
	must := func(args ...string) string {
		t.Helper()
		out, errOut, code := run(t, append(args, g...)...)
		if code != 0 {
			t.Fatalf("warden %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	fails := func(status int, want string, args ...string) {
		t.Helper()
		out, errOut, code := run(t, append(args, g...)...)
		if code != status || !strings.Contains(errOut, want) {
			t.Fatalf("warden %s: exit %d (want %d), stderr %q, want %q (stdout %q)", strings.Join(args, " "), code, status, errOut, want, out)
		}
	}
	const id = "ai-agent://prod/finance/mover"
	key := filepath.Join(dir, "agent.jwk")
	must("agent", "keygen", "--out", key)
	must("agent", "register", id, "--role", "trader", "--owner", "team-a", "--pubkey", filepath.Join(dir, "agent.pub.jwk"), "--attr", "desk=fx", "--attr", "tier=2")
	tok := strings.TrimSpace(must("token", "--agent", id, "--key", key))
	// Its id completes from the server.
	if out, errOut, code := run(t, append(append([]string{"__complete"}, g...), "agent", "update", "ai-agent://prod/finance/mo")...); code != 0 ||
		!strings.Contains(out, id+"\n") || !strings.Contains(out, ":4") {
		t.Fatalf("completion: exit %d %q %q", code, out, errOut)
	}

	must("agent", "update", id, "--role", "reader,auditor", "--owner", "team-b", "--attr", "desk=rates", "--unset-attr", "tier", "--reason", "moved")
	var shown struct {
		Roles      []string
		Owner      string
		Attributes map[string]string
	}
	if err := json.Unmarshal([]byte(must("agent", "show", id, "--format", "json")), &shown); err != nil {
		t.Fatal(err)
	}
	if strings.Join(shown.Roles, ",") != "auditor,reader" || shown.Owner != "team-b" || shown.Attributes["desk"] != "rates" || shown.Attributes["tier"] != "" {
		t.Fatalf("after update: %+v", shown)
	}
	if _, err := w.App.Verifier.Verify(t.Context(), tok); err == nil {
		t.Error("a token from before the update still verifies")
	}
	fails(2, "nothing to change", "agent", "update", id)
	fails(2, "Warden's own", "agent", "update", id, "--attr", "warden.deleted_at=never")
	fails(3, "", "agent", "update", "ai-agent://prod/finance/nobody", "--owner", "x")

	tok = strings.TrimSpace(must("token", "--agent", id, "--key", key))
	fails(2, "--yes", "agent", "delete", id)
	must("agent", "delete", id, "--yes", "--reason", "decommissioned")
	if _, err := w.App.Verifier.Verify(t.Context(), tok); err == nil {
		t.Error("a token from before the delete still verifies")
	}
	if _, errOut, code := run(t, "token", "--agent", id, "--key", key, "--server", w.URL); code == 0 {
		t.Errorf("a deleted agent got a token: %s", errOut)
	}
	fails(4, "was deleted", "agent", "enable", id)
	fails(4, "was deleted", "agent", "rotate-key", id, "--pubkey", filepath.Join(dir, "agent.pub.jwk"))
	if out := must("events", "--target", id); !strings.Contains(out, "agent.update") || !strings.Contains(out, "agent.delete") {
		t.Errorf("the record: %s", out)
	}
}
