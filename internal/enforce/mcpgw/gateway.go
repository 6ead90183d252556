package mcpgw

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/enforce"
	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/provenance"
	"github.com/warden-run/warden/internal/tracing"
	"github.com/warden-run/warden/internal/wire"
)

// JSON-RPC error codes of the gateway's refusals, in the range JSON-RPC
// leaves to servers and clear of the codes the MCP SDKs give a meaning
// (-32000 to -32005, -32042). Their messages are generic: the reasons are
// in the audit log, under the decision id the error's data carries.
const (
	CodeDenied           = -32010
	CodeApprovalRequired = -32011
	CodeUpstream         = -32012
	// CodeLimit refuses what is over a limit (MCP sessions), with HTTP
	// 429 or 503 and Retry-After.
	CodeLimit = -32013
)

// sessionless is the first protocol version without sessions.
const sessionless = "2026-07-28"

// separator joins a server's name and a tool's or prompt's name in what
// agents see ("market-data__get_quote"): server names cannot hold it.
const separator = "__"

// Deps are the parts a gateway works with.
type Deps struct {
	// Decider decides every action; Verifier authenticates every request.
	Decider  enforce.Decider
	Verifier *identity.Verifier
	// Issuer is the authorization server agents get tokens from, named in
	// the protected resource metadata.
	Issuer string
	// Limits bounds each agent's requests, and Conns the connections they
	// arrive on; nil is no limit. Enforcement points on one listener
	// share them.
	Limits *enforce.Limiter
	Conns  *enforce.Conns
	Logger *slog.Logger
	// Provenance, when set, is what agents read, shared with the other
	// enforcement points of the listener (the HTTP proxy); nil: the
	// gateway's own.
	Provenance *provenance.Store
}

// Gateway is an MCP gateway. Handler serves agents; Close stops it.
type Gateway struct {
	cfg Config
	// prov is what each agent has read, to say where its arguments came
	// from (context.provenance).
	prov    *provenance.Store
	dec     enforce.Decider
	ver     *identity.Verifier
	issuer  string
	lg      *slog.Logger
	ups     map[string]*upstream
	order   []*upstream
	auth    *enforce.Edge
	handler http.Handler
	metaURL string
	server  *mcp.Server
	// serverInfo is the gateway's own implementation, as its answers name
	// it.
	serverInfo json.RawMessage
	// agents are the MCP sessions of the stateful handler; done ends
	// their reaper.
	agents agentSessions
	// sdkOnly turns the fast path off (tests of the SDK's path).
	sdkOnly bool
	done    chan struct{}
	once    sync.Once

	// A wrap (NewWrap) fronts one server for one agent: its tools keep
	// their names, and each decision carries the agent's proof.
	single *upstream
	fixed  func(context.Context) (*enforce.Caller, error)
	proof  func(token string) (dpop, htm, htu string, err error)
}

// New makes a gateway. Its upstreams are connected on first use; Connect
// connects them all at once.
func New(cfg Config, d Deps) (*Gateway, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if d.Decider == nil || d.Verifier == nil || d.Issuer == "" {
		return nil, errors.New("mcpgw: a decider, a verifier and the issuer are required")
	}
	lg := d.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	lg = lg.With("pep", cfg.Name)
	prov := d.Provenance
	if prov == nil {
		prov = provenance.NewStore(0, 0)
	}
	g := &Gateway{cfg: cfg, prov: prov, dec: d.Decider, ver: d.Verifier, issuer: d.Issuer, lg: lg, ups: map[string]*upstream{},
		done: make(chan struct{})}
	g.agents.init()
	for _, s := range cfg.Servers {
		u := newUpstream(s, cfg.UpstreamTimeout, lg)
		g.ups[s.Name] = u
		g.order = append(g.order, u)
	}
	pub, _ := url.Parse(cfg.PublicURL)
	g.metaURL = enforce.MetadataURL(pub.Scheme, pub.Host, pub.Path)
	g.auth = &enforce.Edge{Verifier: d.Verifier, Resource: cfg.PublicURL, MetadataURL: g.metaURL, Limits: d.Limits, Conns: d.Conns, Log: lg}

	server := g.mcpServer()
	getServer := func(*http.Request) *mcp.Server { return server }
	// Idle sessions are closed by the gateway (reap), which also sees the
	// calls that bypass the SDK.
	stateful := mcp.NewStreamableHTTPHandler(getServer, &mcp.StreamableHTTPOptions{
		MaxRequestBodyBytes: cfg.MaxRequestBytes,
		Logger:              lg,
	})
	// Protocol 2026-07-28 and later are sessionless: their requests go to a
	// stateless handler, the earlier versions' to the one with sessions.
	stateless := mcp.NewStreamableHTTPHandler(getServer, &mcp.StreamableHTTPOptions{
		Stateless:           true,
		MaxRequestBodyBytes: cfg.MaxRequestBytes,
		Logger:              lg,
	})
	streamable := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Mcp-Protocol-Version") >= sessionless {
			stateless.ServeHTTP(w, r)
			return
		}
		stateful.ServeHTTP(w, r)
	})
	// The SDK binds a session to the user of the request that made it:
	// here the agent, whose identity the edge has checked.
	bind := auth.RequireBearerToken(func(ctx context.Context, _ string, r *http.Request) (*auth.TokenInfo, error) {
		c, ok := ctx.Value(callerKey{}).(*enforce.Caller)
		if !ok {
			return nil, auth.ErrInvalidToken
		}
		return &auth.TokenInfo{UserID: c.Agent, Expiration: c.Expiry, Scopes: c.Roles, Extra: map[string]any{callerExtra: c}}, nil
	}, nil)

	mux := http.NewServeMux()
	mux.Handle("GET "+strings.TrimPrefix(g.metaURL, pub.Scheme+"://"+pub.Host), enforce.ResourceMetadata(cfg.PublicURL, "Warden MCP gateway", d.Issuer))
	mux.Handle(pub.Path, g.edge(bind(streamable)))
	g.handler = mux
	go g.reap()
	return g, nil
}

// mcpServer is the MCP server agents talk to: every request passes
// intercept.
func (g *Gateway) mcpServer() *mcp.Server {
	impl := &mcp.Implementation{Name: "warden-gateway", Title: "Warden MCP gateway", Version: "1"}
	g.serverInfo, _ = json.Marshal(impl)
	g.server = mcp.NewServer(impl, &mcp.ServerOptions{
		Capabilities: &mcp.ServerCapabilities{
			Tools:     &mcp.ToolCapabilities{},
			Resources: &mcp.ResourceCapabilities{},
			Prompts:   &mcp.PromptCapabilities{},
		},
		// Every list is made for the agent that asked.
		SetCacheable: func(_ context.Context, _ mcp.Request, c *mcp.Cacheable) { c.CacheScope = "private"; c.TTLMs = 0 },
		Logger:       g.lg,
	})
	g.server.AddReceivingMiddleware(g.intercept)
	return g.server
}

// Handler serves agents: the MCP endpoint at the public URL's path, and
// its protected resource metadata at the path RFC 9728 gives it.
func (g *Gateway) Handler() http.Handler { return g.handler }

// Connect connects every upstream now, so that the first agent does not
// wait; an upstream that fails is tried again on its next use.
func (g *Gateway) Connect(ctx context.Context) {
	var wg sync.WaitGroup
	for _, u := range g.order {
		wg.Go(func() { u.session(ctx) })
	}
	wg.Wait()
}

// Close disconnects the upstreams and stops their commands.
func (g *Gateway) Close() {
	if g.done != nil {
		g.once.Do(func() { close(g.done) })
	}
	for _, u := range g.order {
		u.close()
	}
}

type callerKey struct{}

const callerExtra = "warden.caller"

// edge authenticates every HTTP request before the MCP layer sees it (see
// enforce.Edge): failures are 401 with a challenge that points at the
// resource metadata.
func (g *Gateway) edge(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := g.auth.Authenticate(w, r, g.cfg.PublicURL)
		if !ok {
			return
		}
		if v := r.Header.Get(wire.UserInputHeader); v != "" {
			text, err := wire.DecodeUserInput(v)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			g.prov.Session(c.Agent, "").AddUserInput(text)
		}
		// The agent's trace, when it sends one, goes on through the
		// gateway to the upstream.
		r = r.WithContext(tracing.FromRequest(r.Context(), r))
		// The SDK reads a bearer token; the edge has checked the real one.
		sdk := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r = r.WithContext(context.WithValue(r.Context(), callerKey{}, c))
			r.Header.Set("Authorization", "Bearer "+c.Token)
			next.ServeHTTP(w, r)
		})
		if sid := r.Header.Get("Mcp-Session-Id"); sid != "" {
			if r.Method == http.MethodDelete {
				g.agents.ending(sid, c.Agent)
			}
			g.agents.touch(sid, c.Agent, time.Now())
			if g.noteInitialized(w, r, c, sid, sdk) {
				return
			}
		}
		if g.fastCall(w, r, c) {
			return
		}
		// A POST without a session to the handler with sessions may open
		// one (initialize): the agent's and the gateway's caps apply.
		if r.Method == http.MethodPost && r.Header.Get("Mcp-Session-Id") == "" && r.Header.Get("Mcp-Protocol-Version") < sessionless {
			release, no := g.agents.reserve(c.Agent, g.cfg.MaxSessionsPerAgent, g.cfg.MaxSessions)
			if no != nil {
				no.write(w)
				return
			}
			defer release()
			w = &sessionOpening{ResponseWriter: w, g: g, agent: c.Agent, release: release}
		}
		sdk.ServeHTTP(w, r)
	})
}

// intercept is the MCP middleware: it answers every list from the
// upstreams' offers, filtered for the agent, and decides every call before
// it is forwarded. Anything else (initialize, ping) is the gateway's own.
func (g *Gateway) intercept(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		switch r := req.(type) {
		case *mcp.ListToolsRequest:
			return g.withCaller(ctx, r, func(c *enforce.Caller) (mcp.Result, error) { return g.listTools(ctx, c, r) })
		case *mcp.CallToolRequest:
			return g.withCaller(ctx, r, func(c *enforce.Caller) (mcp.Result, error) { return g.callTool(ctx, c, r) })
		case *mcp.ListResourcesRequest:
			return g.withCaller(ctx, r, func(c *enforce.Caller) (mcp.Result, error) { return g.listResources(ctx, c, r) })
		case *mcp.ReadResourceRequest:
			return g.withCaller(ctx, r, func(c *enforce.Caller) (mcp.Result, error) { return g.readResource(ctx, c, r) })
		case *mcp.ListResourceTemplatesRequest:
			return g.withCaller(ctx, r, func(c *enforce.Caller) (mcp.Result, error) { return g.listTemplates(ctx, c, r) })
		case *mcp.ListPromptsRequest:
			return g.withCaller(ctx, r, func(c *enforce.Caller) (mcp.Result, error) { return g.listPrompts(ctx, c, r) })
		case *mcp.GetPromptRequest:
			return g.withCaller(ctx, r, func(c *enforce.Caller) (mcp.Result, error) { return g.getPrompt(ctx, c, r) })
		case *mcp.SubscribeRequest, *mcp.UnsubscribeRequest, *mcp.CompleteRequest:
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeMethodNotFound, Message: method + " is not offered through the gateway"}
		case *mcp.ServerRequest[*mcp.InitializeParams]:
			res, err := next(ctx, method, req)
			if err == nil {
				g.opened(r, res)
			}
			return res, err
		case *mcp.InitializedRequest:
			res, err := next(ctx, method, req)
			if err == nil {
				g.initialized(r)
			}
			return res, err
		}
		return next(ctx, method, req)
	}
}

// withCaller runs f for the request's authenticated agent; a request
// without one is refused (it cannot happen behind the edge).
func (g *Gateway) withCaller(ctx context.Context, req mcp.Request, f func(*enforce.Caller) (mcp.Result, error)) (mcp.Result, error) {
	if g.fixed != nil {
		c, err := g.fixed(ctx)
		if err != nil {
			return nil, &jsonrpc.Error{Code: CodeDenied, Message: "the agent has no token: " + err.Error()}
		}
		return f(c)
	}
	extra := req.GetExtra()
	if extra == nil || extra.TokenInfo == nil {
		return nil, &jsonrpc.Error{Code: CodeDenied, Message: "not authenticated"}
	}
	c, ok := extra.TokenInfo.Extra[callerExtra].(*enforce.Caller)
	if !ok {
		return nil, &jsonrpc.Error{Code: CodeDenied, Message: "not authenticated"}
	}
	return f(c)
}
