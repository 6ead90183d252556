package mcpgw_test

import (
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/enforce/mcpgw"
	"github.com/warden-run/warden/internal/policy"
)

// The reference server's get-env tool, wrapped: what it reports of its
// environment holds no WARDEN_ variable and, unless inherited, nothing of
// the wrap's own beyond the bare set.
func TestWrapServerEverythingEnvironment(t *testing.T) {
	dir := npmPackages(t)
	t.Setenv("WARDEN_ADMIN_TOKEN", "wdn_admin_must_not_leak")
	for _, inherit := range []bool{false, true} {
		name := map[bool]string{false: "bare", true: "inherited"}[inherit]
		t.Run(name, func(t *testing.T) {
			e := start(t, nil)
			data := strings.Replace(testData, `"everything/get-sum"`, `"everything/get-sum", "everything/get-env"`, 1)
			b := &policy.Bundle{Files: map[string][]byte{"policy.rego": []byte(testPolicy), "data.json": []byte(data)}}
			v, _, _, err := e.w.App.Policies.Push(e.ctx, "admin:test", b, "get-env for the wrap")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.w.App.Policies.Activate(e.ctx, "admin:test", v.ID); err != nil {
				t.Fatal(err)
			}
			s := wrapped(t, e, e.w.URL, func(c *mcpgw.WrapConfig) {
				c.Name, c.Command, c.InheritEnv = "everything", []string{"node", everythingServer(dir), "stdio"}, inherit
			})
			r, err := s.CallTool(e.ctx, &mcp.CallToolParams{Name: "get-env"})
			if err != nil || r.IsError {
				t.Fatalf("get-env: %v %v", r, err)
			}
			env := text(t, r)
			if strings.Contains(env, "WARDEN_") || strings.Contains(env, "must_not_leak") || !strings.Contains(env, "PATH") {
				t.Fatalf("the wrapped server's environment:\n%s", env)
			}
			if strings.Contains(env, "MCPGW_TEST_SECRET") != inherit {
				t.Fatalf("the wrap's own variables (inherited: %v):\n%s", inherit, env)
			}
		})
	}
}
