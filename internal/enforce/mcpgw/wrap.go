package mcpgw

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/enforce"
)

// WrapDeps are the parts of a wrap: a stdio gateway in front of one MCP
// server command, for one agent (`warden mcp wrap`).
type WrapDeps struct {
	// Decider decides every call; a wrap asks a Warden server (enforce.Remote).
	Decider enforce.Decider
	// Caller returns the agent with a current access token.
	Caller func(context.Context) (*enforce.Caller, error)
	// Proof signs a DPoP proof for a decision request made with token,
	// when the agent's trust domain requires one.
	Proof  func(token string) (dpop, htm, htu string, err error)
	Logger *slog.Logger
}

// NewWrap makes a gateway in front of the MCP server that command starts:
// its tools keep their names, and are in policy as "<name>/<tool>".
func NewWrap(name string, command []string, trust string, d WrapDeps) (*Gateway, error) {
	if d.Decider == nil || d.Caller == nil {
		return nil, errors.New("mcpgw: a wrap needs a decider and the agent")
	}
	// The wrapped server runs as the user who runs the wrap, with the
	// environment the desktop client gave it.
	s := Server{Name: name, Command: command, Trust: trust, InheritEnv: true}
	cfg := Config{PublicURL: "http://127.0.0.1/mcp", Name: "mcp-wrap", Servers: []Server{s}, SessionTimeout: 24 * time.Hour}
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	lg := d.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{cfg: cfg, dec: d.Decider, lg: lg.With("pep", cfg.Name), ups: map[string]*upstream{},
		fixed: d.Caller, proof: d.Proof}
	g.agents.init()
	u := newUpstream(cfg.Servers[0], 30*time.Second, g.lg)
	g.ups[name], g.order, g.single = u, []*upstream{u}, u
	g.mcpServer()
	return g, nil
}

// ServeStdio serves the MCP client on in and out (the process's standard
// input and output) until the client goes or ctx ends.
func (g *Gateway) ServeStdio(ctx context.Context, in io.ReadCloser, out io.WriteCloser) error {
	return g.server.Run(ctx, &mcp.IOTransport{Reader: in, Writer: out})
}
