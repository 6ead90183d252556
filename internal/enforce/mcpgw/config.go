// Package mcpgw is Warden's MCP gateway: an MCP server towards agents
// (Streamable HTTP) and an MCP client of the upstream servers it fronts
// (Streamable HTTP, or stdio commands it starts and supervises). Every
// request is authenticated, every tools/call, resources/read and
// prompts/get decided by policy before it reaches an upstream, and
// tools/list shows an agent only what policy could allow it.
package mcpgw

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/warden-run/warden/internal/enforce"
	"github.com/warden-run/warden/internal/policy"
)

// Config is an MCP gateway's configuration: the MCP part of gateway.yaml
// (the listener it is served on, and the other enforcement points beside
// it, are the application's).
type Config struct {
	// PublicURL is the URL agents reach the MCP endpoint at: the resource
	// their tokens must be issued for (aud) and the URL their DPoP proofs
	// sign. Required.
	PublicURL string `yaml:"public_url"`
	// Name is the enforcement point's name in decisions. Default "mcp-gateway".
	Name string `yaml:"name"`
	// Servers are the upstream MCP servers.
	Servers []Server `yaml:"servers"`
	// MaxRequestBytes bounds one request body. Default 1 MiB.
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
	// UpstreamTimeout bounds one call to an upstream. Default 30s.
	UpstreamTimeout time.Duration `yaml:"upstream_timeout"`
	// SessionTimeout closes an MCP session idle this long. Default 30m.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// MaxSessions bounds the MCP sessions open at once, all agents
	// together (default 4096), and MaxSessionsPerAgent one agent's
	// (default 32). A request that would open one more is refused.
	MaxSessions         int `yaml:"max_sessions"`
	MaxSessionsPerAgent int `yaml:"max_sessions_per_agent"`
	// Relayed, when set, is told of every tool result, resource and prompt the
	// gateway relays to an agent: whom, and how many bytes (the usage
	// the behavioural monitor compares with the agent's baseline).
	Relayed func(agent string, bytes int) `yaml:"-"`
}

// Server is one upstream MCP server.
type Server struct {
	// Name prefixes its tools and prompts as agents see them
	// ("<name>__<tool>"): a-z, 0-9 and '-'.
	Name string `yaml:"name"`
	// Resource is where its tools, resources and prompts are in policy:
	// "<resource>/<tool>" (such as "plc/line-3/oven/set_temperature" for
	// resource "plc/line-3/oven"). Default the name.
	Resource string `yaml:"resource"`
	// URL is a Streamable HTTP endpoint; Command a program the gateway
	// starts and speaks to over stdio. Exactly one of them.
	URL     string   `yaml:"url"`
	Command []string `yaml:"command"`
	// Env is the command's environment, with PATH, HOME, USER, LANG,
	// LC_ALL, TZ and TMPDIR from the gateway's own: nothing else of the
	// gateway's environment (its secrets) reaches an upstream, unless
	// InheritEnv says so; and no WARDEN_ variable ever does (env.go).
	Env        map[string]string `yaml:"env"`
	InheritEnv bool              `yaml:"inherit_env"`
	// Trust is "trusted" or "untrusted": an allowed call, read or prompt
	// of an untrusted server taints the agent ("untrusted_content"), which
	// policy sees in its later decisions.
	Trust string `yaml:"trust"`
	// Tools are catalog attributes of its tools, by tool name, sent with
	// every decision about them (sensitivity, egress: true for a tool that
	// sends data out). The policy's catalog wins where it says otherwise,
	// except that these can only add restriction (see docs/policy-reference.md).
	Tools map[string]map[string]any `yaml:"tools"`
	// StartTimeout bounds one attempt to start and reach the server:
	// default 2 minutes for a command (an `npx -y` package may first be
	// downloaded), 10 seconds for a URL. Meanwhile the server is
	// "starting": lists leave it out and say so, calls to it wait.
	StartTimeout time.Duration `yaml:"start_timeout"`
}

// Default start timeouts of an upstream (Server.StartTimeout).
const (
	DefaultCommandStart = 2 * time.Minute
	DefaultURLStart     = 10 * time.Second
)

// startTimeout is s's start timeout, its default when not set.
func (s Server) startTimeout() time.Duration {
	switch {
	case s.StartTimeout > 0:
		return s.StartTimeout
	case len(s.Command) > 0:
		return DefaultCommandStart
	}
	return DefaultURLStart
}

// Trust levels of an upstream, and the taint an allowed read of an
// untrusted one sets.
const (
	Trusted        = enforce.Trusted
	Untrusted      = enforce.Untrusted
	TaintUntrusted = enforce.TaintUntrusted
)

var serverName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Check fills defaults and says everything that is wrong.
func (c *Config) Check() error {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if c.Name == "" {
		c.Name = "mcp-gateway"
	}
	if u, err := url.Parse(c.PublicURL); c.PublicURL == "" {
		bad("public_url: the URL agents reach the MCP endpoint at is required")
	} else if err == nil && u.User != nil {
		bad("public_url: must not hold a user or password")
	} else if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" || u.RawQuery != "" {
		bad("public_url %q: an absolute http(s) URL without query or fragment", c.PublicURL)
	} else if strings.Trim(u.Path, "/") == "" {
		bad("public_url %q: the MCP endpoint needs a path of its own, such as /mcp", c.PublicURL)
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = 1 << 20
	}
	if c.MaxRequestBytes < 1024 {
		bad("max_request_bytes %d: at least 1024", c.MaxRequestBytes)
	}
	if c.UpstreamTimeout == 0 {
		c.UpstreamTimeout = 30 * time.Second
	}
	if c.UpstreamTimeout < 0 {
		bad("upstream_timeout must be positive")
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 30 * time.Minute
	}
	if c.SessionTimeout < 0 {
		bad("session_timeout must be positive")
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = 4096
	}
	if c.MaxSessionsPerAgent == 0 {
		c.MaxSessionsPerAgent = 32
	}
	if c.MaxSessions < 0 || c.MaxSessionsPerAgent < 0 || c.MaxSessionsPerAgent > c.MaxSessions {
		bad("max_sessions and max_sessions_per_agent: positive, one agent's at most all of them")
	}
	if len(c.Servers) == 0 {
		bad("servers: at least one upstream server")
	}
	seen := map[string]bool{}
	for i := range c.Servers {
		problems = append(problems, c.Servers[i].check(fmt.Sprintf("servers[%d]", i), seen)...)
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// check fills the server's defaults and says what is wrong with it; seen
// holds the names declared before it.
func (s *Server) check(at string, seen map[string]bool) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if !serverName.MatchString(s.Name) {
		bad("%s.name %q: 1 to 63 of a-z, 0-9 and '-', starting with a letter or digit", at, s.Name)
	} else if seen[s.Name] {
		bad("%s.name %q: declared twice", at, s.Name)
	}
	seen[s.Name] = true
	if s.Resource == "" {
		s.Resource = s.Name
	} else if strings.HasPrefix(s.Resource, "/") || strings.HasSuffix(s.Resource, "/") || strings.Contains(s.Resource, "//") || strings.ContainsAny(s.Resource, " *") {
		bad("%s (%s).resource %q: path segments joined by '/', without '*'", at, s.Name, s.Resource)
	}
	switch {
	case s.URL == "" && len(s.Command) == 0:
		bad("%s (%s): url or command is required", at, s.Name)
	case s.URL != "" && len(s.Command) > 0:
		bad("%s (%s): url and command exclude each other", at, s.Name)
	case s.URL != "":
		if u, err := url.Parse(s.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("%s (%s).url: an http(s) URL", at, s.Name)
		} else if u.User != nil {
			bad("%s (%s).url: no user or password in the URL (it would reach logs)", at, s.Name)
		}
	case s.Command[0] == "":
		bad("%s (%s).command: the program is empty", at, s.Name)
	}
	if s.Trust != Trusted && s.Trust != Untrusted {
		bad("%s (%s).trust %q: trusted or untrusted (say which; there is no default)", at, s.Name, s.Trust)
	}
	if s.StartTimeout < 0 || s.StartTimeout > time.Hour {
		bad("%s (%s).start_timeout %s: 0 (the default) to 1h", at, s.Name, s.StartTimeout)
	}
	for name := range s.Env {
		if err := CheckEnvName(name); err != nil {
			bad("%s (%s).env: %v", at, s.Name, err)
		}
	}
	for tool, attrs := range s.Tools {
		if tool == "" || strings.Contains(tool, "/") {
			bad("%s (%s).tools: %q is not a tool name", at, s.Name, tool)
		}
		for _, p := range policy.CheckAttributes(attrs) {
			bad("%s (%s).tools.%s.%s", at, s.Name, tool, p)
		}
	}
	return problems
}
