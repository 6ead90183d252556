package cli_test

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/cli"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/humans"
	"github.com/warden-run/warden/internal/humans/oidctest"
)

var (
	alice = oidctest.User{ID: "248289761001", Username: "alice", Password: "correct horse", Email: "alice@example.com", Groups: []string{"warden-admins"}}
	bob   = oidctest.User{ID: "248289761002", Username: "bob", Password: "battery staple", Email: "bob@example.com", Groups: []string{"plant-viewers"}}
	carol = oidctest.User{ID: "248289761003", Username: "carol", Password: "tr0ub4dor", Email: "carol@example.com", Groups: []string{"marketing"}}
)

// signInServer is a Warden server whose people sign in at a real OpenID
// provider: admins, viewers, and a group that gives no role.
func signInServer(t *testing.T) (*apptest.Instance, *oidctest.Provider) {
	t.Helper()
	p := oidctest.Start(t, alice, bob, carol)
	w := apptest.Start(t, func(c *config.Config) {
		c.Humans = humans.Config{Issuer: p.Issuer, ClientID: oidctest.ClientID,
			Groups: map[string][]string{"warden-admins": {"admin"}, "plant-viewers": {"viewer"}}}
	})
	return w, p
}

// prompts is the terminal of a person running warden login: it acts on
// what the command asks them to do, as they would.
type prompts struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	act  func(line string)
	done sync.WaitGroup
}

func (p *prompts) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf.Write(b)
	for _, line := range strings.Split(string(b), "\n") {
		if line != "" {
			p.done.Add(1)
			go func() { defer p.done.Done(); p.act(line) }()
		}
	}
	return len(b), nil
}

func login(t *testing.T, args []string, act func(line string)) (string, string, int) {
	t.Helper()
	var out bytes.Buffer
	pr := &prompts{act: act}
	code := cli.Main(context.Background(), args, &out, pr)
	pr.done.Wait()
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return out.String(), pr.buf.String(), code
}

// A person signs in with a device code and with a browser; admin commands
// then act as them, the audit log names them, and they sign out. A person
// whose groups give no role cannot sign in; a viewer cannot change anything.
func TestLoginAndActAsAPerson(t *testing.T) {
	t.Parallel()
	w, p := signInServer(t)
	sessions := filepath.Join(t.TempDir(), "sessions.json")
	g := []string{"--server", w.URL, "--session-file", sessions}
	device := func(u oidctest.User) func(string) {
		return func(line string) {
			if m := regexp.MustCompile(`enter the code (\S+)`).FindStringSubmatch(line); m != nil {
				if err := p.ApproveDevice(m[1], u.Username, u.Password); err != nil {
					t.Error(err)
				}
			}
		}
	}
	out, errOut, code := login(t, append([]string{"login"}, g...), device(alice))
	if code != 0 || !strings.Contains(out, "signed in as human:"+p.Issuer+"#"+alice.ID) || !strings.Contains(out, "roles: admin") {
		t.Fatalf("login: exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(out+errOut, "wdn_session_") {
		t.Fatal("the session token was printed")
	}
	out, errOut, code = run(t, append([]string{"whoami"}, g...)...)
	if code != 0 || !strings.Contains(out, alice.Email) {
		t.Fatalf("whoami: exit %d\n%s%s", code, out, errOut)
	}
	// An admin act as alice, named in the audit log with her email.
	out, errOut, code = run(t, append([]string{"agent", "register", "ai-agent://dev/ops/signed", "--role", "worker", "--owner", "ops",
		"--pubkey", writePub(t)}, g...)...)
	if code != 0 {
		t.Fatalf("register as alice: exit %d\n%s%s", code, out, errOut)
	}
	if e := lastAdminEntry(t, w, "agent.register"); e.Actor != "human:"+p.Issuer+"#"+alice.ID || !strings.Contains(string(e.Detail), `"actor_email":"alice@example.com"`) {
		t.Fatalf("the entry names %s %s", e.Actor, e.Detail)
	}
	if out, errOut, code := run(t, append([]string{"logout"}, g...)...); code != 0 || !strings.Contains(out, "signed out") {
		t.Fatalf("logout: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code := run(t, append([]string{"whoami"}, g...)...); code == 0 || !strings.Contains(errOut, "no admin credential") {
		t.Fatalf("whoami after logout: exit %d %s", code, errOut)
	}

	// The browser, as bob, a viewer.
	browser := func(u oidctest.User) func(string) {
		return func(line string) {
			if !strings.HasPrefix(line, p.Issuer) {
				return
			}
			back, err := p.BrowserLogin(line, u.Username, u.Password)
			if err != nil {
				t.Error(err)
				return
			}
			resp, err := http.Get(back) // the browser follows the provider back to the CLI
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		}
	}
	out, errOut, code = login(t, append([]string{"login", "--browser"}, g...), browser(bob))
	if code != 0 || !strings.Contains(out, "roles: viewer") {
		t.Fatalf("browser login: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := run(t, append([]string{"agent", "list"}, g...)...); code != 0 || !strings.Contains(out, "signed") {
		t.Fatalf("a viewer lists agents: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code := run(t, append([]string{"agent", "quarantine", "ai-agent://dev/ops/signed", "--reason", "x"}, g...)...); code == 0 || !strings.Contains(errOut, "lacks the permission agents.write") {
		t.Fatalf("a viewer quarantined an agent: exit %d %s", code, errOut)
	}

	// carol's groups give no role.
	_, errOut, code = login(t, append([]string{"login"}, g...), device(carol))
	if code == 0 || !strings.Contains(errOut, "no_role") {
		t.Fatalf("a person without a role signed in: exit %d %s", code, errOut)
	}
}

func writePub(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if _, _, code := run(t, "agent", "keygen", "--out", filepath.Join(dir, "agent.jwk")); code != 0 {
		t.Fatal("keygen")
	}
	return filepath.Join(dir, "agent.pub.jwk")
}

// lastAdminEntry is the last audit entry of action.
func lastAdminEntry(t *testing.T, w *apptest.Instance, action string) *audit.Entry {
	t.Helper()
	ctx := context.Background()
	w.App.Relay.Sync(ctx)
	n, _ := w.App.Audit.Size(ctx)
	data, _ := w.App.Audit.Read(ctx, 0, n)
	for i := len(data) - 1; i >= 0; i-- {
		if e, _ := audit.DecodeEntry(data[i]); e != nil && e.Action == action {
			return e
		}
	}
	t.Fatalf("no %s entry", action)
	return nil
}
