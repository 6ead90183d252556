package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/siem"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/sdk"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestRefusesPlainHTTPOffLoopback(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.Data = filepath.Join(t.TempDir(), "data")
	cfg.Server.Addr = "0.0.0.0:0"
	cfg.Identity.Issuer = "https://warden.test"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Fatalf("Validate on 0.0.0.0 without TLS: %v", err)
	}
	// Run refuses too, should a configuration reach it unvalidated.
	cfg.Server.Insecure = true
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.Server.Insecure = false
	a, err := app.New(context.Background(), cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "not a loopback address") || !strings.Contains(err.Error(), "--tls-cert") {
		t.Fatalf("Run on 0.0.0.0 without TLS: %v", err)
	}
	a.Close()
	// --insecure is the explicit way out.
	cfg.Server.Insecure = true
	b, err := app.New(context.Background(), cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, stop := run(t, b)
	if err := stop(); err != nil {
		t.Fatalf("Run with --insecure: %v", err)
	}
}

func TestBootstrapAdminTokenAndRestart(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	cfg := config.Default()
	cfg.Data = data
	cfg.Server.Addr = "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := app.New(context.Background(), cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(data, app.AdminTokenFileName)
	if a.AdminTokenFile != path {
		t.Fatalf("AdminTokenFile %q", a.AdminTokenFile)
	}
	for _, f := range []string{path, filepath.Join(data, "master.key")} {
		st, err := os.Stat(f)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v mode %v", f, err, st.Mode())
		}
	}
	tok, _ := os.ReadFile(path)
	kid := a.Keys.Keys()[0].KID
	a.Close()

	// A restart reuses the token and the signing key; it writes nothing new.
	b, err := app.New(context.Background(), cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.AdminTokenFile != "" {
		t.Fatal("the restart wrote a new admin token")
	}
	again, _ := os.ReadFile(path)
	if string(again) != string(tok) || b.Keys.Keys()[0].KID != kid {
		t.Fatal("the restart changed the admin token or the signing key")
	}
}

func TestGracefulShutdownFinishesInFlightRequests(t *testing.T) {
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
	defer a.Close()
	addr, stop := run(t, a)
	// A slow client: half of its request is sent when shutdown starts.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := "grant_type=client_credentials"
	fmt.Fprintf(conn, "POST /oauth/token HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s",
		addr, len(body), body[:10])
	time.Sleep(50 * time.Millisecond) // let the server read the first bytes
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-stopped:
		t.Fatalf("shutdown did not wait for the request in flight: %v", err)
	default:
	}
	fmt.Fprint(conn, body[10:])
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("the request in flight got no answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized { // no client assertion: answered, not cut off
		t.Fatalf("the request in flight got HTTP %d", resp.StatusCode)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Run after shutdown: %v", err)
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Fatal("still serving after shutdown")
	}
}

// run serves a until the returned stop is called; stop returns Run's error.
func run(t *testing.T, a *app.App) (addr string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, ready) }()
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	}
	return addr, func() error { cancel(); return <-done }
}

func TestTokensSurviveARestart(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	const id = "ai-agent://dev/survivor"
	key := w.Register(t, id, "r")
	c, _ := sdk.NewClient(w.URL, id, key)
	tok, err := c.FetchToken(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cfg := w.Config
	w.App.Close()
	b, err := app.New(context.Background(), cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Verifier.Verify(t.Context(), tok.AccessToken); err != nil {
		t.Fatalf("a token issued before the restart: %v", err)
	}
}

// TestReplicasShareRevocationsThroughPostgres runs two control planes on
// one PostgreSQL database: an agent quarantined on one is refused by the
// other's verifier within a second, with no request to the first.
func TestReplicasShareRevocationsThroughPostgres(t *testing.T) {
	t.Parallel()
	dsn := os.Getenv("WARDEN_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("set WARDEN_TEST_POSTGRES to run the replica test against PostgreSQL")
	}
	first, second := replicas(t, dsn)
	if first.AdminToken == "" || second.AdminToken != "" {
		t.Fatal("the second replica made its own admin token")
	}
	const id = "ai-agent://dev/shared"
	key := first.Register(t, id, "r")
	c, _ := sdk.NewClient(first.URL, id, key)
	tok, err := c.FetchToken(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The second replica accepts the token: same keys, same registry.
	waitFor(t, func() error { _, err := second.App.Verifier.Verify(t.Context(), tok.AccessToken); return err })

	// The admin token of the first works on the second.
	req, _ := http.NewRequest("POST", second.URL+"/v1/agents/"+url.PathEscape(id)+"/quarantine", nil)
	req.Header.Set("Authorization", "Bearer "+first.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if resp.StatusCode != 200 || out["status"] != "quarantined" {
		t.Fatalf("quarantine through the second replica: %d %v", resp.StatusCode, out)
	}
	// The first replica learns of it through LISTEN/NOTIFY.
	deadline := time.Now().Add(time.Second)
	for {
		_, err := first.App.Verifier.Verify(t.Context(), tok.AccessToken)
		if errors.Is(err, identity.ErrAgentInactive) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first replica still accepts the token a second after the quarantine: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Issuer key rotation on one replica is followed by the other.
	kid, err := second.App.Keys.Rotate(t.Context(), "admin:test", false)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() error {
		if got := first.App.Keys.Keys()[0]; got.KID != kid || !got.Active {
			return errors.New("not yet")
		}
		return nil
	})
}

func waitFor(t *testing.T, f func() error) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestOneProcessPerDataDirectory(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.Data = filepath.Join(t.TempDir(), "data")
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := app.New(context.Background(), cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if b, err := app.New(context.Background(), cfg, quiet()); err == nil {
		b.Close()
		t.Fatal("a second control plane opened the same data directory")
	} else if !strings.Contains(err.Error(), "in use by another warden process") {
		t.Fatalf("unclear refusal: %v", err)
	}
}

// TestAdminActionsReachTheAuditLogAndTheSIEM registers an agent through a
// control plane with a webhook exporter: the action is in the audit log
// when the call returns, and the exporter delivers it, signed.
func TestAdminActionsReachTheAuditLogAndTheSIEM(t *testing.T) {
	t.Parallel()
	secret := "webhook-secret-for-tests-0123456789"
	secretFile := filepath.Join(t.TempDir(), "hook.secret")
	os.WriteFile(secretFile, []byte(secret+"\n"), 0o600)
	got := make(chan []byte, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("X-Warden-Signature") != siem.WebhookSignature([]byte(secret), r.Header.Get("X-Warden-Timestamp"), body) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		got <- body
	}))
	defer hook.Close()
	w := apptest.Start(t, func(c *config.Config) {
		c.Audit.Exporters = []config.Exporter{{Name: "hook", Type: "webhook", URL: hook.URL, SecretFile: secretFile}}
	})
	waitFor(t, func() error {
		if !w.App.Audit.Leading() {
			return errors.New("not leading yet")
		}
		return nil
	})
	const id = "ai-agent://dev/audited"
	key := sdk.GenerateKey()
	body := `{"id":"` + id + `","roles":["r"],"owner":"o","public_key":` + string(key.PublicJWK()) + `}`
	req, _ := http.NewRequest("POST", w.URL+"/v1/agents", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+w.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("register: %v %v", err, resp)
	}
	resp.Body.Close()
	// In the audit log already.
	res, _, err := w.App.Audit.Query(t.Context(), audit.Query{After: -1, Kind: audit.KindAdmin, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range res {
		if r.Entry.Action == "agent.register" && r.Entry.Target == id && r.Entry.Actor == "admin:bootstrap" {
			found = true
		}
	}
	if !found {
		t.Fatal("the registration is not in the audit log when the call returns")
	}
	// And delivered to the SIEM.
	deadline := time.After(10 * time.Second)
	for {
		select {
		case b := <-got:
			if strings.Contains(string(b), `"action":"agent.register"`) && strings.Contains(string(b), id) {
				return
			}
		case <-deadline:
			t.Fatal("the webhook never received the registration")
		}
	}
}
