package mcpgw

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/enforce"
	"github.com/warden-run/warden/internal/provenance"
)

// WrapConfig is the MCP server a wrap starts, and how.
//
// The server is the thing the wrap polices, and the wrap holds the
// agent's key and the enforcement point's credential: the server gets a
// bare environment (PATH, HOME, USER, LANG, LC_ALL, TZ and TMPDIR of the
// wrap's own, then Env) and, where the wrap runs as root, runs as another
// user, who cannot read the wrap's files or memory.
type WrapConfig struct {
	// Name is where the server's tools are in policy: "<name>/<tool>".
	Name string
	// Command starts the server, which speaks MCP on its standard input
	// and output.
	Command []string
	// Trust is Trusted or Untrusted: a call to an untrusted server, once
	// allowed, taints the agent.
	Trust string
	// Env are the variables the server gets beyond the bare set. No name
	// may start with WARDEN_.
	Env map[string]string
	// InheritEnv gives the server the wrap's whole environment instead of
	// the bare set, but for its WARDEN_ variables, which never reach it.
	InheritEnv bool
	// User is who the server runs as: a user name or a numeric id, with
	// that user's groups, and HOME and USER set to theirs. Switching needs
	// root; a wrap that runs as root refuses to start without a User
	// ("root" says to run the server as root anyway). Empty: the user who
	// runs the wrap.
	User string
}

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

// NewWrap makes a gateway in front of the MCP server that cfg.Command
// starts: its tools keep their names, and are in policy as "<name>/<tool>".
// The server is started on first use, and again when it exits.
func NewWrap(cfg WrapConfig, d WrapDeps) (*Gateway, error) {
	if d.Decider == nil || d.Caller == nil {
		return nil, errors.New("mcpgw: a wrap needs a decider and the agent")
	}
	attr, who, err := runAs(cfg.User)
	if err != nil {
		return nil, fmt.Errorf("mcpgw: %w", err)
	}
	// The user's HOME and USER, unless Env says otherwise.
	env := maps.Clone(cfg.Env)
	for k, v := range who.env {
		if env == nil {
			env = map[string]string{}
		}
		if _, set := env[k]; !set {
			env[k] = v
		}
	}
	s := Server{Name: cfg.Name, Command: cfg.Command, Trust: cfg.Trust, Env: env, InheritEnv: cfg.InheritEnv}
	gc := Config{PublicURL: "http://127.0.0.1/mcp", Name: "mcp-wrap", Servers: []Server{s}, SessionTimeout: 24 * time.Hour}
	if err := gc.Check(); err != nil {
		return nil, err
	}
	lg := d.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	if who.root {
		lg.Warn("mcp wrap: the MCP server runs as root, as --user root asks: it can read the agent's key and the enforcement point's credential")
	}
	g := &Gateway{cfg: gc, prov: provenance.NewStore(0, 0), dec: d.Decider, lg: lg.With("pep", gc.Name), ups: map[string]*upstream{},
		fixed: d.Caller, proof: d.Proof}
	g.agents.init()
	u := newUpstream(gc.Servers[0], 30*time.Second, g.lg)
	u.sysProcAttr = attr
	g.ups[cfg.Name], g.order, g.single = u, []*upstream{u}, u
	g.mcpServer()
	return g, nil
}

// serverUser is who a wrapped server runs as, beyond its credential.
type serverUser struct {
	// env are the variables that name the user (HOME, USER), when the
	// server runs as someone else than the wrap.
	env map[string]string
	// root is set when the server runs as root, because User says so.
	root bool
}

// ServeStdio serves the MCP client on in and out (the process's standard
// input and output) until the client goes or ctx ends.
func (g *Gateway) ServeStdio(ctx context.Context, in io.ReadCloser, out io.WriteCloser) error {
	return g.server.Run(ctx, &mcp.IOTransport{Reader: in, Writer: out})
}
