package app

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/warden-run/warden/internal/enforce"
	"github.com/warden-run/warden/internal/enforce/extauthz"
	"github.com/warden-run/warden/internal/enforce/httpproxy"
	"github.com/warden-run/warden/internal/enforce/mcpgw"
)

// GatewayConfig is gateway.yaml: the enforcement points served on one
// listener (the MCP gateway and the HTTP reverse proxy) and, on a
// listener of its own, the Envoy external authorization server.
type GatewayConfig struct {
	// Listen is the address the gateway serves agents on.
	Listen string `yaml:"listen"`
	// TLSCert and TLSKey serve HTTPS. On an address that is not loopback
	// the gateway refuses plain HTTP unless Insecure says a TLS proxy
	// fronts it.
	TLSCert  string `yaml:"tls_cert"`
	TLSKey   string `yaml:"tls_key"`
	Insecure bool   `yaml:"insecure"`
	// RateLimit bounds each agent's requests, across the enforcement
	// points. Default DefaultRateLimit; {rate: 0} turns it off.
	RateLimit *enforce.RateLimit `yaml:"rate_limit"`
	// Limits bound connections and the time requests take (see
	// enforce.Limits for the defaults).
	Limits enforce.Limits `yaml:"limits"`
	// MCP is the MCP gateway: public_url, name, servers and its limits.
	// Without servers there is none.
	MCP mcpgw.Config `yaml:",inline"`
	// HTTP is the reverse proxy for HTTP APIs, on the same listener.
	HTTP httpproxy.Config `yaml:"http"`
	// ExtAuthz is the Envoy external authorization server (gRPC), on its
	// own listener, when its listen is set.
	ExtAuthz extauthz.Config `yaml:"ext_authz"`
}

// DefaultRateLimit is each agent's request rate when gateway.yaml says
// none: well above one busy agent's (hundreds of calls a second), well
// below what would starve the others.
var DefaultRateLimit = enforce.RateLimit{Rate: 1000, Burst: 2000}

// LoadGatewayConfig reads and checks a gateway configuration file.
func LoadGatewayConfig(path string) (GatewayConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return GatewayConfig{}, err
	}
	return ParseGatewayConfig(b)
}

// ParseGatewayConfig parses a gateway configuration, refusing unknown
// fields, and checks it.
func ParseGatewayConfig(b []byte) (GatewayConfig, error) {
	var c GatewayConfig
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return GatewayConfig{}, errors.New("gateway config: the file is empty")
		}
		return GatewayConfig{}, fmt.Errorf("gateway config: %w", err)
	}
	if err := dec.Decode(new(any)); !errors.Is(err, io.EOF) {
		return GatewayConfig{}, errors.New("gateway config: more than one YAML document (after ---): put every setting in one")
	}
	if err := c.Check(); err != nil {
		return GatewayConfig{}, err
	}
	return c, nil
}

// Check fills defaults and says everything that is wrong.
func (c *GatewayConfig) Check() error {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if c.Listen == "" {
		bad("listen: the address to serve agents on is required")
	} else if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen %q: %v", c.Listen, err)
	}
	if c.MCP.PublicURL == "" && c.Listen != "" {
		if host, _, err := net.SplitHostPort(c.Listen); err == nil && (host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified()) {
			bad("public_url: listen %q is every interface; set the URL agents use to reach the gateway", c.Listen)
		}
		scheme := "http"
		if c.TLSCert != "" {
			scheme = "https"
		}
		c.MCP.PublicURL = scheme + "://" + c.Listen + "/mcp"
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("tls_cert and tls_key go together")
	}
	if c.RateLimit == nil {
		rl := DefaultRateLimit
		c.RateLimit = &rl
	}
	if math.IsNaN(c.RateLimit.Rate) || math.IsInf(c.RateLimit.Rate, 0) {
		bad("rate_limit.rate: a finite number of requests per second")
	} else if c.RateLimit.Rate < 0 || c.RateLimit.Burst < 0 {
		bad("rate_limit: rate and burst must not be negative")
	}
	if c.RateLimit.Rate == 0 && c.RateLimit.Burst > 0 {
		bad("rate_limit: a burst without a rate; give the rate (requests per second), or {rate: 0} for no limit")
	}
	if c.RateLimit.Rate > 0 && c.RateLimit.Burst == 0 {
		c.RateLimit.Burst = max(1, int(c.RateLimit.Rate))
	}
	problems = append(problems, checkLimits(&c.Limits)...)
	if len(c.MCP.Servers) == 0 && len(c.HTTP.Routes) == 0 && c.ExtAuthz.Listen == "" {
		bad("servers: at least one upstream server (or http.routes, or ext_authz)")
	}
	if len(c.MCP.Servers) > 0 {
		if err := c.MCP.Check(); err != nil {
			bad("%v", err)
		}
	} else if c.MCP.Name == "" {
		c.MCP.Name = "mcp-gateway" // the proxy and ext_authz decide under it
	}
	problems = append(problems, c.checkExtAuthz()...)
	if pub, err := url.Parse(c.MCP.PublicURL); err == nil && pub.Host != "" {
		if err := c.HTTP.Check(pub.Scheme + "://" + pub.Host); err != nil {
			bad("%v", err)
		}
		if strings.ContainsAny(pub.Path, "{}") {
			bad("public_url %q: a path without '{' or '}'", c.MCP.PublicURL)
		}
		if hu, err := url.Parse(c.HTTP.Resource); err == nil && len(c.MCP.Servers) > 0 && len(c.HTTP.Routes) > 0 &&
			strings.TrimSuffix(hu.Path, "/") == strings.TrimSuffix(pub.Path, "/") {
			bad("http.resource %q: its path is the MCP endpoint's; give the proxy a path of its own, or none", c.HTTP.Resource)
		}
		if len(c.MCP.Servers) > 0 {
			for _, r := range c.HTTP.Routes {
				if strings.HasPrefix(pub.Path+"/", r.Prefix) || strings.HasPrefix(r.Prefix, strings.TrimSuffix(pub.Path, "/")+"/") {
					bad("http.routes (%s): prefix %q overlaps the MCP endpoint %s", r.Name, r.Prefix, pub.Path)
				}
			}
		}
	}
	if len(problems) > 0 {
		return errors.New("gateway config: " + strings.Join(problems, "; "))
	}
	return nil
}

func (c *GatewayConfig) checkExtAuthz() []string {
	if c.ExtAuthz.Listen == "" {
		if c.ExtAuthz.Resource != "" {
			return []string{"ext_authz.resource: set without ext_authz.listen, so no server would use it"}
		}
		return nil
	}
	var problems []string
	if _, _, err := net.SplitHostPort(c.ExtAuthz.Listen); err != nil {
		problems = append(problems, fmt.Sprintf("ext_authz.listen %q: %v", c.ExtAuthz.Listen, err))
	}
	if u, err := url.Parse(c.ExtAuthz.Resource); err == nil && u.User != nil {
		problems = append(problems, "ext_authz.resource: must not hold a user or password")
	} else if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		problems = append(problems, fmt.Sprintf("ext_authz.resource %q: the absolute URL agents' tokens for the mesh are issued for", c.ExtAuthz.Resource))
	}
	return problems
}

// checkLimits fills the limits' defaults and says what is wrong with them.
func checkLimits(l *enforce.Limits) []string {
	var problems []string
	if l.MaxConnections < 0 || l.MaxConnectionsPerAgent < 0 || l.MaxConnectionsPerSource < 0 || l.BodyTimeout < 0 || l.WriteTimeout < 0 || l.StreamTimeout < 0 {
		problems = append(problems, "limits: none may be negative")
	}
	*l = l.WithDefaults()
	if l.MaxConnectionsPerAgent > l.MaxConnections {
		problems = append(problems, fmt.Sprintf("limits.max_connections_per_agent %d: at most max_connections (%d)", l.MaxConnectionsPerAgent, l.MaxConnections))
	}
	return problems
}
