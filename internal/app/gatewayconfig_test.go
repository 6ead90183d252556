package app_test

import (
	"strings"
	"testing"

	"github.com/warden-run/warden/internal/app"
)

func TestGatewayConfig(t *testing.T) {
	t.Parallel()
	good := `
listen: 127.0.0.1:7300
servers:
  - {name: market-data, url: "http://127.0.0.1:9001/mcp", trust: trusted}
  - name: web
    resource: tools/web
    command: [npx, server-everything]
    trust: untrusted
    tools: {fetch: {egress: true}}
rate_limit: {rate: 20}
`
	c, err := app.ParseGatewayConfig([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.MCP.Servers[0].Resource != "market-data" || c.MCP.Servers[1].Resource != "tools/web" {
		t.Fatalf("resources %q %q", c.MCP.Servers[0].Resource, c.MCP.Servers[1].Resource)
	}
	if c.MCP.PublicURL != "http://127.0.0.1:7300/mcp" || c.MCP.Name != "mcp-gateway" || c.RateLimit.Burst != 20 || c.MCP.MaxRequestBytes != 1<<20 {
		t.Fatalf("defaults %+v", c)
	}
	bad := []struct{ yaml, says string }{
		{"listen: 127.0.0.1:7300\nservers: []", "at least one upstream"},
		{"listen: nowhere\nservers: [{name: a, url: 'http://x', trust: trusted}]", "listen"},
		{"listen: 127.0.0.1:1\nservers: [{name: A_b, url: 'http://x', trust: trusted}]", `name "A_b"`},
		{"listen: 127.0.0.1:1\nservers: [{name: a, url: 'http://x', trust: trusted}, {name: a, url: 'http://y', trust: trusted}]", "declared twice"},
		{"listen: 127.0.0.1:1\nservers: [{name: a, trust: trusted}]", "url or command"},
		{"listen: 127.0.0.1:1\nservers: [{name: a, url: 'http://x', command: [x], trust: trusted}]", "exclude each other"},
		{"listen: 127.0.0.1:1\nservers: [{name: a, url: 'ftp://x', trust: trusted}]", "an http(s) URL"},
		{"listen: 127.0.0.1:1\nservers: [{name: a, url: 'http://u:secret@x/mcp', trust: trusted}]", "no user or password"},
		{"listen: 127.0.0.1:1\nservers: [{name: a, url: 'http://x'}]", "trusted or untrusted"},
		{"listen: 127.0.0.1:1\nservers: [{name: a, url: 'http://x', trust: trusted, tools: {'a/b': {}}}]", "not a tool name"},
		{"listen: 127.0.0.1:1\nsevers: []", "field severs not found"},
		{"listen: 127.0.0.1:1\nservers: [{name: a, resource: 'plc/', url: 'http://x', trust: trusted}]", "path segments"},
		{"listen: 127.0.0.1:1\npublic_url: /mcp\nservers: [{name: a, url: 'http://x', trust: trusted}]", "public_url"},
		{"listen: 127.0.0.1:1\npublic_url: 'http://gw.example/'\nservers: [{name: a, url: 'http://x', trust: trusted}]", "a path of its own"},
		{"listen: 127.0.0.1:1\npublic_url: 'http://u:secret@gw.example/mcp'\nservers: [{name: a, url: 'http://x', trust: trusted}]", "public_url: must not hold a user"},
		{"listen: 127.0.0.1:1\npublic_url: 'ftp://gw.example/mcp'\nservers: [{name: a, url: 'http://x', trust: trusted}]", "http(s)"},
		{"listen: 127.0.0.1:1\nrate_limit: {rate: .nan}\nservers: [{name: a, url: 'http://x', trust: trusted}]", "finite"},
		{"listen: 127.0.0.1:1\nrate_limit: {rate: .inf}\nservers: [{name: a, url: 'http://x', trust: trusted}]", "finite"},
		{"listen: 127.0.0.1:1\next_authz: {listen: '127.0.0.1:2', resource: 'https://u:secret@mesh.example'}", "ext_authz.resource: must not hold a user"},
		{"listen: 127.0.0.1:1\nservers: [{name: a, url: 'http://x', trust: trusted, tools: {send: {egress: 'yes'}}}]", "tools.send.egress yes: want true or false"},
		{"listen: 127.0.0.1:1\nservers: [{name: a, url: 'http://x', trust: trusted, tools: {send: {read_only: 1}}}]", "tools.send.read_only 1: want true or false"},
		{"listen: 127.0.0.1:1\nservers: [{name: a, url: 'http://x', trust: trusted, tools: {send: {sensitivity: 3}}}]", "tools.send.sensitivity 3"},
		{"listen: 127.0.0.1:1\nservers: [{name: a, url: 'http://x', trust: trusted, tools: {send: {trust: maybe}}}]", "tools.send.trust maybe"},
		{"", "the file is empty"},
		{"listen: 127.0.0.1:1\nservers: [{name: a, url: 'http://x', trust: trusted}]\n---\nservers: []", "more than one YAML document"},
		{"listen: 127.0.0.1:1\nrate_limit: {burst: 500}\nservers: [{name: a, url: 'http://x', trust: trusted}]", "a burst without a rate"},
		{"listen: 127.0.0.1:1\next_authz: {resource: 'https://mesh.example'}\nservers: [{name: a, url: 'http://x', trust: trusted}]", "set without ext_authz.listen"},
		{"listen: 0.0.0.0:7300\nservers: [{name: a, url: 'http://x', trust: trusted}]", "every interface"},
		{"listen: 127.0.0.1:1\nservers: [{name: a, url: 'http://x', trust: trusted}]\nhttp: {resource: 'http://127.0.0.1:1/mcp', routes: [{name: crm, prefix: /crm/, upstream: 'http://y/', trust: trusted}]}", "the MCP endpoint's"},
		{"listen: 127.0.0.1:1\nservers: [{name: a, url: 'http://x', trust: trusted}]\nhttp: {resource: 'crm', routes: [{name: crm, prefix: /crm/, upstream: 'http://y/', trust: trusted}]}", "http.resource \"crm\""},
	}
	for _, b := range bad {
		t.Run(b.says, func(t *testing.T) {
			_, err := app.ParseGatewayConfig([]byte(b.yaml))
			if err == nil || !strings.Contains(err.Error(), b.says) || strings.Contains(err.Error(), "secret") {
				t.Errorf("%q: %v, want it to say %q", b.yaml, err, b.says)
			}
		})
	}
}
