package cli_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/app/apptest"
)

// `warden mcp wrap` holds the agent's key, the enforcement point's
// credential and, in its environment, whatever its caller had (the admin
// token here). The server it starts is the one it polices: run as a real
// process, with the key passed as an open file (/dev/fd/3), it looks for
// all three, in its environment, by path, in its open files and in the
// wrap's /proc, and finds none.
func TestWrapKeepsSecretsFromTheServer(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	adminFile := filepath.Join(w.Config.Data, app.AdminTokenFileName)
	g := []string{"--server", w.URL, "--admin-token-file", adminFile}
	must := func(args ...string) {
		t.Helper()
		if out, errOut, code := run(t, append(args, g...)...); code != 0 {
			t.Fatalf("warden %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	must("policy", "push", writeBundle(t, map[string]string{"policy.rego": "package warden.authz\n\nallow := true\n"}), "-m", "all", "--activate")
	made := t.TempDir()
	const agent = "ai-agent://dev/desktop"
	must("agent", "keygen", "--out", filepath.Join(made, "agent.jwk"))
	must("agent", "register", agent, "--role", "reader", "--owner", "ada", "--pubkey", filepath.Join(made, "agent.pub.jwk"))
	must("pep", "register", "desktop", "--audience", "warden", "--out", filepath.Join(made, "desktop.cred"))

	var key struct{ D string }
	keyJWK, _ := os.ReadFile(filepath.Join(made, "agent.jwk"))
	cred, _ := os.ReadFile(filepath.Join(made, "desktop.cred"))
	if err := json.Unmarshal(keyJWK, &key); err != nil || key.D == "" || len(cred) < 10 {
		t.Fatalf("the key or the credential: %v", err)
	}
	secrets := map[string]string{"the admin token": w.AdminToken, "the agent's private key": key.D, "the credential": strings.TrimSpace(string(cred))}

	type setup struct {
		name string
		// wrapUser runs the wrap itself (empty: the test's user); user is
		// its --user.
		wrapUser, user string
	}
	setups := []setup{{name: "the wrap and the server as one user"}}
	if os.Geteuid() == 0 {
		setups = []setup{
			{name: "the wrap as root, the server as nobody", user: "nobody"},
			{name: "the wrap and the server as one user", wrapUser: "nobody"},
		}
	}
	for _, s := range setups {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			exe, dir := shareExecutable(t)
			owner := ownerOf(t, s.wrapUser)
			secretDir := filepath.Join(dir, "secrets")
			keyFile, credFile := filepath.Join(secretDir, "agent.jwk"), filepath.Join(secretDir, "desktop.cred")
			for _, f := range []struct {
				path string
				body []byte
			}{{secretDir, nil}, {keyFile, keyJWK}, {credFile, cred}} {
				var err error
				if f.body == nil {
					err = os.Mkdir(f.path, 0o700)
				} else {
					err = os.WriteFile(f.path, f.body, 0o600)
				}
				if err == nil && owner != nil {
					err = os.Chown(f.path, int(owner.Uid), int(owner.Gid))
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			keyOpen, err := os.Open(keyFile)
			if err != nil {
				t.Fatal(err)
			}
			defer keyOpen.Close()

			args := []string{"--server", w.URL, "mcp", "wrap", "--agent", agent, "--key", "/dev/fd/3", "--credential", credFile,
				"--trust", "trusted", "--name", "snoop", "--env", "CLI_TEST_ROLE=snoop"}
			if s.user != "" {
				args = append(args, "--user", s.user)
			}
			cmd := exec.Command(exe, append(args, "--", exe)...)
			cmd.Dir = dir
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "CLI_TEST_ROLE=warden", "WARDEN_ADMIN_TOKEN=" + w.AdminToken}
			cmd.ExtraFiles = []*os.File{keyOpen}
			if owner != nil {
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: owner}
			}
			var wrapErr strings.Builder
			cmd.Stderr = &wrapErr
			client := mcp.NewClient(&mcp.Implementation{Name: "desktop", Version: "1"}, nil)
			session, err := client.Connect(t.Context(), &mcp.CommandTransport{Command: cmd}, nil)
			if err != nil {
				t.Fatalf("connect to the wrap: %v\n%s", err, wrapErr.String())
			}
			defer session.Close()
			call := func(tool string, args any) string {
				t.Helper()
				r, err := session.CallTool(t.Context(), &mcp.CallToolParams{Name: tool, Arguments: args})
				if err != nil || r.IsError || len(r.Content) != 1 {
					t.Fatalf("%s: %+v %v\n%s", tool, r, err, wrapErr.String())
				}
				return r.Content[0].(*mcp.TextContent).Text
			}
			found := map[string]string{
				"its environment":        call("environment", nil),
				"its open files":         call("open_files", nil),
				"the wrap's environment": call("parent_environment", nil),
			}
			// Run as the wrap's user, the server can read what that user
			// can, the key file included (as documented): only another
			// user keeps the files from it.
			if s.user != "" {
				found["the key file"] = call("read", map[string]string{"path": keyFile})
				found["the credential file"] = call("read", map[string]string{"path": credFile})
			}
			for where, text := range found {
				for what, secret := range secrets {
					if strings.Contains(text, secret) {
						t.Errorf("the server found %s in %s", what, where)
					}
				}
			}
			if env := found["its environment"]; strings.Contains(env, "WARDEN_") || !strings.Contains(env, "CLI_TEST_ROLE=snoop") {
				t.Errorf("the server's environment:\n%s", env)
			}
			if files := found["its open files"]; strings.Contains(files, keyFile) || strings.Contains(files, credFile) {
				t.Errorf("the server has the wrap's files open:\n%s", files)
			}
			if !strings.HasPrefix(found["the wrap's environment"], "error: ") {
				t.Errorf("the server read the wrap's environment")
			}
			if s.user != "" {
				if !strings.Contains(found["the key file"], "permission denied") || !strings.Contains(found["the credential file"], "permission denied") {
					t.Errorf("the server as %s could read the key or the credential file", s.user)
				}
				if u, _ := user.Lookup(s.user); call("whoami", nil) != u.Uid {
					t.Errorf("the server does not run as %s", s.user)
				}
			}
		})
	}
}

// ownerOf is the credential of the user named, or nil for the test's own.
func ownerOf(t *testing.T, name string) *syscall.Credential {
	t.Helper()
	if name == "" {
		return nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Skipf("no user %s here", name)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
}

// shareExecutable copies this test binary into a new directory that any
// user may enter, and returns both.
func shareExecutable(t *testing.T) (exe, dir string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "warden-wrap-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	exe = filepath.Join(dir, "warden")
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return exe, dir
}

// warden mcp wrap refuses what would hand the server a secret: a Warden
// variable named with --env, and, run as root, a server that would run
// as root without --user saying so.
func TestWrapRefusesToExposeSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, cred := filepath.Join(dir, "agent.jwk"), filepath.Join(dir, "desktop.cred")
	if _, _, code := run(t, "agent", "keygen", "--out", key); code != 0 {
		t.Fatal("keygen failed")
	}
	if err := os.WriteFile(cred, []byte("wdn_pep_x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrap := []string{"--server", "http://127.0.0.1:1", "mcp", "wrap", "--agent", "ai-agent://dev/me", "--key", key, "--credential", cred, "--trust", "trusted"}
	cases := []struct {
		name string
		args []string
		says string
	}{
		{"a Warden variable passed on", []string{"--user", ownUserFlag(), "--env", "WARDEN_ADMIN_TOKEN"}, "WARDEN_ADMIN_TOKEN: Warden's own variables"},
		{"a Warden variable set", []string{"--user", ownUserFlag(), "--env", "WARDEN_SERVER=http://elsewhere"}, "WARDEN_SERVER: Warden's own variables"},
		{"a variable without a name", []string{"--user", ownUserFlag(), "--env", "=x"}, "not a variable name"},
	}
	if os.Geteuid() == 0 {
		cases = append(cases, struct {
			name string
			args []string
			says string
		}{"root without --user", nil, "name the user it runs as with --user"})
	} else {
		cases = append(cases, struct {
			name string
			args []string
			says string
		}{"another user without root", []string{"--user", "0"}, "needs root"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			args := append(append(append([]string{}, wrap...), c.args...), "--", "true")
			_, errOut, code := run(t, args...)
			if code == 0 || !strings.Contains(errOut, c.says) {
				t.Fatalf("exit %d: %s", code, errOut)
			}
		})
	}
}

// ownUserFlag is the --user that names the test's own user.
func ownUserFlag() string { return strconv.Itoa(os.Geteuid()) }
