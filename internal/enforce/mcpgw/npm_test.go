package mcpgw_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/enforce/mcpgw"
	"github.com/warden-run/warden/sdk"
)

// npmPackages is the folder .ci/run installs the npm packages into
// (WARDEN_TEST_NPM). Without it, or without node, the test is skipped and
// says why on standard error, so that a skip is never silent.
func npmPackages(t *testing.T) string {
	t.Helper()
	skip := func(why string) {
		fmt.Fprintf(os.Stderr, "SKIP %s: %s\n", t.Name(), why)
		t.Skip(why)
	}
	dir := os.Getenv("WARDEN_TEST_NPM")
	if dir == "" {
		skip("WARDEN_TEST_NPM is not set: it names the folder where .ci/run installs @modelcontextprotocol/server-everything and @modelcontextprotocol/sdk")
	}
	if _, err := exec.LookPath("node"); err != nil {
		skip("node is not installed")
	}
	for _, f := range []string{everythingServer(dir), filepath.Join(dir, "node_modules/@modelcontextprotocol/sdk/package.json")} {
		if _, err := os.Stat(f); err != nil {
			skip(fmt.Sprintf("%s is missing: run .ci/run, or npm install the packages it names into %s", f, dir))
		}
	}
	return dir
}

func everythingServer(dir string) string {
	return filepath.Join(dir, "node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}

// The reference server from the npm registry, a third party's stdio
// server, behind the gateway: its tools are filtered and decided like any
// other, and as an untrusted upstream it taints the session.
func TestServerEverythingUpstream(t *testing.T) {
	t.Parallel()
	dir := npmPackages(t)
	e := start(t, func(c *mcpgw.Config, _ *mcpgw.Deps) {
		c.Servers = append(c.Servers, mcpgw.Server{Name: "everything", Command: []string{"node", everythingServer(dir), "stdio"}, Trust: mcpgw.Untrusted})
	})
	s := e.connect(e.agent("ai-agent://dev/reader", "reader"), nil)
	res, err := s.ListTools(e.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := names(res.Tools)
	if !slices.Contains(got, "everything__echo") || !slices.Contains(got, "everything__get-sum") || slices.Contains(got, "everything__get-env") {
		t.Fatalf("reader sees %v: want echo and get-sum from the reference server, not get-env", got)
	}
	r, err := s.CallTool(e.ctx, &mcp.CallToolParams{Name: "everything__get-sum", Arguments: map[string]int{"a": 2, "b": 3}})
	if err != nil || !strings.Contains(text(t, r), "5") {
		t.Fatalf("get-sum: %v %v", r, err)
	}
	_, err = s.CallTool(e.ctx, &mcp.CallToolParams{Name: "everything__get-env"})
	e.refusal(err, mcpgw.CodeDenied)
	// Its output is untrusted: nothing may leave the session after it.
	_, err = s.CallTool(e.ctx, &mcp.CallToolParams{Name: "mail__send", Arguments: map[string]string{"to": "x@example.com"}})
	if en := e.refusal(err, mcpgw.CodeDenied); !slices.Equal(en.Reasons, []string{"tainted_session_egress"}) {
		t.Fatalf("audit entry %+v", en)
	}
}

// A second real client: the TypeScript SDK's, with DPoP on every request.
func TestTypeScriptClient(t *testing.T) {
	t.Parallel()
	dir := npmPackages(t)
	e := start(t, nil)
	const id = "ai-agent://prod/node-agent"
	k := e.w.Register(t, id, "reader")
	c, err := sdk.NewClient(e.w.URL, id, k, sdk.WithResource(e.url), sdk.WithDPoP())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Token(e.ctx)
	if err != nil || tok.TokenType != "DPoP" {
		t.Fatalf("token %v %v", tok, err)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "testdata/node-client.mjs")
	cmd.Env = append(os.Environ(), "MCP_SDK_DIR="+filepath.Join(dir, "node_modules/@modelcontextprotocol/sdk"), "GATEWAY_URL="+e.url,
		"WARDEN_TOKEN="+tok.AccessToken, "AGENT_JWK="+string(k.PrivateJWK()),
		"CALL_TOOL=market__get_quote", `CALL_ARGS={"symbol":"ACME"}`)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node client: %v\n%s", err, stderr.String())
	}
	var got struct {
		Tools  []string `json:"tools"`
		Result struct {
			Content []struct{ Text string } `json:"content"`
		} `json:"result"`
		Error  any `json:"error"`
		Denied struct {
			Code int             `json:"code"`
			Data json.RawMessage `json:"data"`
		} `json:"denied"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("node client printed %s: %v", out, err)
	}
	want := []string{"docs__report", "local__env", "local__pid", "mail__send", "market__customer", "market__get_quote", "web__fetch", "web__fetch_error"}
	if !slices.Equal(got.Tools, want) {
		t.Errorf("tools %v, want %v", got.Tools, want)
	}
	if got.Error != nil || len(got.Result.Content) == 0 || got.Result.Content[0].Text != "ACME 101.5" {
		t.Errorf("call: %s", out)
	}
	if got.Denied.Code != mcpgw.CodeDenied || !strings.Contains(string(got.Denied.Data), "dec_") {
		t.Errorf("denied call: %s", out)
	}
	// Its protocol has sessions: the gateway answered its calls itself.
	if e.plainCalls.Load() != 2 {
		t.Errorf("%d of its 2 calls took the gateway's fast path", e.plainCalls.Load())
	}
}
