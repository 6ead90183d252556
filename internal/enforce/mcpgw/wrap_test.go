package mcpgw_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http/httptest"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/enforce"
	"github.com/warden-run/warden/internal/enforce/mcpgw"
	"github.com/warden-run/warden/internal/wire"
	"github.com/warden-run/warden/sdk"
)

// wrapped starts a wrap in front of this test binary's stdio server, for
// a prod agent (DPoP on every decision), deciding through the Warden
// server at decider's address, and connects a Go SDK client to it over
// pipes, as a desktop MCP client would over the wrap's stdio. edit, when
// not nil, changes the wrap's configuration first.
func wrapped(t *testing.T, e *env, server string, edit func(*mcpgw.WrapConfig)) *mcp.ClientSession {
	t.Helper()
	cred, _, err := e.w.App.EnforcementPoints.Register(e.ctx, "admin:test", decide.Registration{Name: "desktop", Description: "test", Audience: "warden", Trust: []string{"session"}})
	if err != nil {
		t.Fatal(err)
	}
	const id = "ai-agent://prod/desktop-assistant"
	k := e.w.Register(t, id, "reader")
	c, err := sdk.NewClient(e.w.URL, id, k, sdk.WithDPoP())
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := mcpgw.WrapConfig{Name: "local", Command: []string{exe, "-test.run=^$"}, Trust: mcpgw.Trusted,
		Env: map[string]string{"MCPGW_TEST_STDIO": "1"}, User: ownUser()}
	if edit != nil {
		edit(&cfg)
	}
	w, err := mcpgw.NewWrap(cfg, mcpgw.WrapDeps{
		Decider: enforce.Remote{Client: wire.Client{Server: server, Credential: cred}},
		Caller: func(ctx context.Context) (*enforce.Caller, error) {
			tok, err := c.Token(ctx)
			if err != nil {
				return nil, err
			}
			return &enforce.Caller{Token: tok.AccessToken, Agent: id}, nil
		},
		Proof: func(token string) (string, string, string, error) {
			p, err := k.DPoPProof("POST", server+"/v1/decide", token)
			return p, "POST", server + "/v1/decide", err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	toWrap, fromClient := io.Pipe()
	toClient, fromWrap := io.Pipe()
	go w.ServeStdio(e.ctx, toWrap, fromWrap)
	client := mcp.NewClient(&mcp.Implementation{Name: "desktop", Version: "1"}, &mcp.ClientOptions{Capabilities: &mcp.ClientCapabilities{}})
	s, err := client.Connect(e.ctx, &mcp.IOTransport{Reader: toClient, Writer: fromClient}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// `warden mcp wrap`: a desktop client's stdio server in front of a local
// MCP server, every call decided by the Warden server with the agent's
// own token and proof.
func TestWrap(t *testing.T) {
	e := start(t, nil)
	s := wrapped(t, e, e.w.URL, nil)
	res, err := s.ListTools(e.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(res.Tools); !slices.Equal(got, []string{"env", "pid"}) {
		t.Fatalf("tools %v, want [env pid]: their own names, only what policy could allow", got)
	}
	if r, err := s.CallTool(e.ctx, &mcp.CallToolParams{Name: "pid"}); err != nil || r.IsError {
		t.Fatalf("allowed call: %v %v", r, err)
	}
	_, err = s.CallTool(e.ctx, &mcp.CallToolParams{Name: "wipe_disk"})
	if en := e.refusal(err, mcpgw.CodeDenied); en.EnforcementPoint != "desktop" || en.Agent != "ai-agent://prod/desktop-assistant" {
		t.Fatalf("audit entry %+v", en)
	}
}

// A wrap whose Warden server is gone denies everything.
func TestWrapWithoutWarden(t *testing.T) {
	e := start(t, nil)
	gone := httptest.NewServer(nil)
	gone.Close()
	s := wrapped(t, e, gone.URL, nil)
	if res, err := s.ListTools(e.ctx, nil); err != nil || len(res.Tools) != 0 {
		t.Fatalf("tools without Warden: %+v %v", res, err)
	}
	_, err := s.CallTool(e.ctx, &mcp.CallToolParams{Name: "pid"})
	var rpc *jsonrpc.Error
	if !errors.As(err, &rpc) || rpc.Code != mcpgw.CodeDenied {
		t.Fatalf("a call without a decision: %v, want a denial", err)
	}
}

// ownUser is the --user a test wrap names to run its server as the test's
// own user: root must say so.
func ownUser() string {
	if os.Geteuid() == 0 {
		return "root"
	}
	return ""
}

// The wrapped server is the one the wrap polices: it gets a bare
// environment and what the configuration adds, or with InheritEnv the
// wrap's own, and never a WARDEN_ variable (the admin token, the server's
// address) either way.
func TestWrapEnvironment(t *testing.T) {
	t.Setenv("WARDEN_ADMIN_TOKEN", "wdn_admin_must_not_leak")
	t.Setenv("warden_lower_case", "must-not-leak")
	for _, c := range []struct {
		name     string
		inherit  bool
		want     []string
		mustNot  []string
		explicit map[string]string
	}{
		{name: "bare", explicit: map[string]string{"API_BASE": "https://api.example"},
			want: []string{"MCPGW_TEST_STDIO=1", "API_BASE=https://api.example", "PATH="}, mustNot: []string{"MCPGW_TEST_SECRET", "must_not_leak", "must-not-leak"}},
		{name: "inherited", inherit: true,
			want: []string{"MCPGW_TEST_STDIO=1", "MCPGW_TEST_SECRET=gateway-secret", "PATH="}, mustNot: []string{"must_not_leak", "must-not-leak"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := start(t, nil)
			s := wrapped(t, e, e.w.URL, func(cfg *mcpgw.WrapConfig) {
				cfg.InheritEnv = c.inherit
				maps.Copy(cfg.Env, c.explicit)
			})
			r, err := s.CallTool(e.ctx, &mcp.CallToolParams{Name: "env"})
			if err != nil || r.IsError {
				t.Fatalf("env: %v %v", r, err)
			}
			env := text(t, r)
			for _, w := range c.want {
				if !strings.Contains(env, w) {
					t.Errorf("the server's environment lacks %s:\n%s", w, env)
				}
			}
			for _, w := range c.mustNot {
				if strings.Contains(env, w) {
					t.Errorf("the server's environment holds %s:\n%s", w, env)
				}
			}
		})
	}
}

// A wrap that would give the server what it must not have does not start.
func TestWrapRefuses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		edit func(*mcpgw.WrapConfig)
		says string
	}{
		{"a Warden variable", func(c *mcpgw.WrapConfig) { c.Env["WARDEN_ADMIN_TOKEN"] = "x" }, "WARDEN_ADMIN_TOKEN: Warden's own variables"},
		{"a Warden variable in lower case", func(c *mcpgw.WrapConfig) { c.Env["warden_server"] = "x" }, "warden_server: Warden's own variables"},
		{"a name with '='", func(c *mcpgw.WrapConfig) { c.Env["A=B"] = "x" }, "not a variable name"},
		{"an unknown user", func(c *mcpgw.WrapConfig) { c.User = "no-such-user-here" }, "--user no-such-user-here"},
	}
	if os.Geteuid() == 0 {
		cases = append(cases, struct {
			name string
			edit func(*mcpgw.WrapConfig)
			says string
		}{"root without a user", func(c *mcpgw.WrapConfig) { c.User = "" }, "name the user it runs as with --user"})
	} else {
		cases = append(cases, struct {
			name string
			edit func(*mcpgw.WrapConfig)
			says string
		}{"another user without root", func(c *mcpgw.WrapConfig) { c.User = "0" }, "needs root"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg := mcpgw.WrapConfig{Name: "local", Command: []string{"true"}, Trust: mcpgw.Trusted, Env: map[string]string{}, User: ownUser()}
			c.edit(&cfg)
			_, err := mcpgw.NewWrap(cfg, mcpgw.WrapDeps{Decider: enforce.Remote{Client: wire.Client{Server: "http://127.0.0.1:1", Credential: "x"}},
				Caller: func(context.Context) (*enforce.Caller, error) { return nil, errors.New("unused") }})
			if err == nil || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("NewWrap: %v, want an error saying %q", err, c.says)
			}
		})
	}
}

// Where the wrap runs as root, the server runs as the user named, with
// that user's groups, home and name, and none of root's.
func TestWrapRunsServerAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody here")
	}
	exe := shareExecutable(t)
	e := start(t, nil)
	s := wrapped(t, e, e.w.URL, func(cfg *mcpgw.WrapConfig) {
		cfg.Command[0], cfg.User = exe, "nobody"
	})
	r, err := s.CallTool(e.ctx, &mcp.CallToolParams{Name: "pid"})
	if err != nil || r.IsError {
		t.Fatalf("pid: %v %v", r, err)
	}
	var out struct{ PID int }
	if err := json.Unmarshal([]byte(text(t, r)), &out); err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", out.PID))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string][]string{}
	for _, line := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			ids[k] = strings.Fields(v)
		}
	}
	groups, _ := nobody.GroupIds()
	if ids["Uid"][0] != nobody.Uid || ids["Uid"][1] != nobody.Uid || ids["Gid"][0] != nobody.Gid || !slices.Equal(sorted(ids["Groups"]), sorted(groups)) {
		t.Fatalf("the server runs as uid %v gid %v groups %v, want nobody (%s, %s, %v)", ids["Uid"], ids["Gid"], ids["Groups"], nobody.Uid, nobody.Gid, groups)
	}
	r, err = s.CallTool(e.ctx, &mcp.CallToolParams{Name: "env"})
	if err != nil || r.IsError {
		t.Fatalf("env: %v %v", r, err)
	}
	if env := text(t, r); !envHas(env, "HOME="+nobody.HomeDir) || !envHas(env, "USER=nobody") {
		t.Fatalf("the server's environment does not name its user:\n%s", env)
	}
	// A HOME the configuration gives wins over the user's.
	e = start(t, nil)
	s = wrapped(t, e, e.w.URL, func(cfg *mcpgw.WrapConfig) {
		cfg.Command[0], cfg.User, cfg.Env["HOME"] = exe, "nobody", "/tmp/given-home"
	})
	r, err = s.CallTool(e.ctx, &mcp.CallToolParams{Name: "env"})
	if err != nil || r.IsError {
		t.Fatalf("env: %v %v", r, err)
	}
	if env := text(t, r); !envHas(env, "HOME=/tmp/given-home") || !envHas(env, "USER=nobody") {
		t.Fatalf("the server's environment with HOME given:\n%s", env)
	}
}

// envHas reports whether an environment, one variable a line, holds kv.
func envHas(env, kv string) bool { return slices.Contains(strings.Split(env, "\n"), kv) }

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }

// shareExecutable copies this test binary where any user may run it, and
// returns its path.
func shareExecutable(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mcpgw-wrap-")
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
	exe := filepath.Join(dir, "server")
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return exe
}
