// Package mcpgw is Warden's MCP gateway: an MCP server towards agents
// (Streamable HTTP) and an MCP client of the upstream servers it fronts
// (Streamable HTTP, or stdio commands it starts and supervises). Every
// request is authenticated, every tools/call, resources/read and
// prompts/get decided by policy before it reaches an upstream, and
// tools/list shows an agent only what policy could allow it.
package mcpgw

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/warden-run/warden/internal/enforce"
	"github.com/warden-run/warden/internal/enforce/extauthz"
	"github.com/warden-run/warden/internal/enforce/httpproxy"
)

// Config is a gateway's configuration (gateway.yaml).
type Config struct {
	// Listen is the address the gateway serves agents on.
	Listen string `yaml:"listen"`
	// PublicURL is the URL agents reach the MCP endpoint at: the resource
	// their tokens must be issued for (aud) and the URL their DPoP proofs
	// sign. Default http://<listen>/mcp.
	PublicURL string `yaml:"public_url"`
	// TLSCert and TLSKey serve HTTPS. On an address that is not loopback
	// the gateway refuses plain HTTP unless Insecure says a TLS proxy
	// fronts it.
	TLSCert  string `yaml:"tls_cert"`
	TLSKey   string `yaml:"tls_key"`
	Insecure bool   `yaml:"insecure"`
	// Name is the enforcement point's name in decisions. Default "mcp-gateway".
	Name string `yaml:"name"`
	// Servers are the upstream MCP servers.
	Servers []Server `yaml:"servers"`
	// RateLimit bounds each agent's requests.
	RateLimit RateLimit `yaml:"rate_limit"`
	// MaxRequestBytes bounds one request body. Default 1 MiB.
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
	// UpstreamTimeout bounds one call to an upstream. Default 30s.
	UpstreamTimeout time.Duration `yaml:"upstream_timeout"`
	// SessionTimeout closes an MCP session idle this long. Default 30m.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// HTTP is the reverse proxy for HTTP APIs, on the same listener.
	HTTP httpproxy.Config `yaml:"http"`
	// ExtAuthz is the Envoy external authorization server (gRPC), on its
	// own listener, when Listen is set.
	ExtAuthz extauthz.Config `yaml:"ext_authz"`
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
	// Trust is "trusted" or "untrusted": what an untrusted server returns
	// taints the agent's session ("untrusted_content").
	Trust string `yaml:"trust"`
	// Tools are catalog attributes of its tools, by tool name, sent with
	// every decision about them (sensitivity, egress: true for a tool that
	// sends data out). The policy's own catalog takes precedence.
	Tools map[string]map[string]any `yaml:"tools"`
}

// RateLimit is a token bucket per agent: Rate requests per second, bursts
// of Burst (default: the rate). Rate 0 means no limit.
type RateLimit = enforce.RateLimit

// Trust levels of an upstream, and the session taint a result from an
// untrusted one adds.
const (
	Trusted        = enforce.Trusted
	Untrusted      = enforce.Untrusted
	TaintUntrusted = enforce.TaintUntrusted
)

var serverName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// LoadConfig reads and checks a gateway configuration file.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	return ParseConfig(b)
}

// ParseConfig parses a gateway configuration, refusing unknown fields, and
// checks it.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("gateway config: %w", err)
	}
	if err := c.Check(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Check fills defaults and says everything that is wrong.
func (c *Config) Check() error {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if c.Name == "" {
		c.Name = "mcp-gateway"
	}
	if c.Listen == "" {
		bad("listen: the address to serve agents on is required")
	} else if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen %q: %v", c.Listen, err)
	}
	if c.PublicURL == "" && c.Listen != "" {
		c.PublicURL = "http://" + c.Listen + "/mcp"
	}
	if u, err := url.Parse(c.PublicURL); err == nil && u.User != nil {
		bad("public_url: must not hold a user or password")
	} else if c.PublicURL != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" || u.RawQuery != "") {
		bad("public_url %q: an absolute http(s) URL without query or fragment", c.PublicURL)
	} else if c.PublicURL != "" && strings.Trim(u.Path, "/") == "" {
		bad("public_url %q: the MCP endpoint needs a path of its own, such as /mcp", c.PublicURL)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("tls_cert and tls_key go together")
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
	if math.IsNaN(c.RateLimit.Rate) || math.IsInf(c.RateLimit.Rate, 0) {
		bad("rate_limit.rate: a finite number of requests per second")
	} else if c.RateLimit.Rate < 0 || c.RateLimit.Burst < 0 {
		bad("rate_limit: rate and burst must not be negative")
	}
	if c.RateLimit.Rate > 0 && c.RateLimit.Burst == 0 {
		c.RateLimit.Burst = max(1, int(c.RateLimit.Rate))
	}
	if len(c.Servers) == 0 && len(c.HTTP.Routes) == 0 && c.ExtAuthz.Listen == "" {
		bad("servers: at least one upstream server (or http.routes, or ext_authz)")
	}
	if c.ExtAuthz.Listen != "" {
		if _, _, err := net.SplitHostPort(c.ExtAuthz.Listen); err != nil {
			bad("ext_authz.listen %q: %v", c.ExtAuthz.Listen, err)
		}
		if u, err := url.Parse(c.ExtAuthz.Resource); err == nil && u.User != nil {
			bad("ext_authz.resource: must not hold a user or password")
		} else if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("ext_authz.resource %q: the absolute URL agents' tokens for the mesh are issued for", c.ExtAuthz.Resource)
		}
	}
	if pub, err := url.Parse(c.PublicURL); err == nil && pub.Host != "" {
		if err := c.HTTP.Check(pub.Scheme + "://" + pub.Host); err != nil {
			bad("%v", err)
		}
		for _, r := range c.HTTP.Routes {
			if strings.HasPrefix(pub.Path+"/", r.Prefix) || strings.HasPrefix(r.Prefix, strings.TrimSuffix(pub.Path, "/")+"/") {
				bad("http.routes (%s): prefix %q overlaps the MCP endpoint %s", r.Name, r.Prefix, pub.Path)
			}
		}
	}
	seen := map[string]bool{}
	for i, s := range c.Servers {
		at := fmt.Sprintf("servers[%d]", i)
		if !serverName.MatchString(s.Name) {
			bad("%s.name %q: 1 to 63 of a-z, 0-9 and '-', starting with a letter or digit", at, s.Name)
		} else if seen[s.Name] {
			bad("%s.name %q: declared twice", at, s.Name)
		}
		seen[s.Name] = true
		if s.Resource == "" {
			c.Servers[i].Resource = s.Name
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
		for name := range s.Env {
			if err := CheckEnvName(name); err != nil {
				bad("%s (%s).env: %v", at, s.Name, err)
			}
		}
		for tool := range s.Tools {
			if tool == "" || strings.Contains(tool, "/") {
				bad("%s (%s).tools: %q is not a tool name", at, s.Name, tool)
			}
		}
	}
	if len(problems) > 0 {
		return errors.New("gateway config: " + strings.Join(problems, "; "))
	}
	return nil
}

// server finds an upstream's configuration by name.
func (c *Config) server(name string) (Server, bool) {
	for _, s := range c.Servers {
		if s.Name == name {
			return s, true
		}
	}
	return Server{}, false
}
