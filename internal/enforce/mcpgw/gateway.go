package mcpgw

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/yosida95/uritemplate/v3"

	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/enforce"
	"github.com/warden-run/warden/internal/enforce/httpproxy"
	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/policy"
)

// JSON-RPC error codes of the gateway's refusals, in the range JSON-RPC
// leaves to servers and clear of the codes the MCP SDKs give a meaning
// (-32000 to -32005, -32042). Their messages are generic: the reasons are
// in the audit log, under the decision id the error's data carries.
const (
	CodeDenied           = -32010
	CodeApprovalRequired = -32011
	CodeUpstream         = -32012
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
	Logger *slog.Logger
}

// Gateway is an MCP gateway. Handler serves agents; Close stops it.
type Gateway struct {
	cfg      Config
	dec      enforce.Decider
	ver      *identity.Verifier
	issuer   string
	lg       *slog.Logger
	ups      map[string]*upstream
	order    []*upstream
	sessions *enforce.Sessions
	auth     *enforce.Edge
	handler  http.Handler
	metaURL  string
	server   *mcp.Server
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
	g := &Gateway{cfg: cfg, dec: d.Decider, ver: d.Verifier, issuer: d.Issuer, lg: lg, ups: map[string]*upstream{},
		sessions: enforce.NewSessions(cfg.SessionTimeout), agents: agentSessions{m: map[string]*agentSession{}}, done: make(chan struct{})}
	for _, s := range cfg.Servers {
		u := newUpstream(s, cfg.UpstreamTimeout, lg)
		g.ups[s.Name] = u
		g.order = append(g.order, u)
	}
	pub, _ := url.Parse(cfg.PublicURL)
	g.metaURL = enforce.MetadataURL(pub.Scheme, pub.Host, pub.Path)
	g.auth = &enforce.Edge{Verifier: d.Verifier, Resource: cfg.PublicURL, MetadataURL: g.metaURL, Limits: enforce.NewLimiter(cfg.RateLimit), Log: lg}

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
	meta := g.metadata(cfg.PublicURL, "Warden MCP gateway")
	mux.Handle("GET "+strings.TrimPrefix(g.metaURL, pub.Scheme+"://"+pub.Host), meta)
	mux.Handle(pub.Path, g.edge(bind(streamable)))
	root := meta
	if len(cfg.HTTP.Routes) > 0 {
		hu, _ := url.Parse(cfg.HTTP.Resource)
		edge := &enforce.Edge{Verifier: d.Verifier, Resource: cfg.HTTP.Resource, MetadataURL: enforce.MetadataURL(hu.Scheme, hu.Host, hu.Path),
			Limits: g.auth.Limits, Log: lg}
		proxy := httpproxy.New(cfg.HTTP, httpproxy.Deps{Decider: d.Decider, Edge: edge, Sessions: g.sessions, Logger: lg})
		for _, prefix := range proxy.Prefixes() {
			mux.Handle(prefix, proxy)
		}
		pm := g.metadata(cfg.HTTP.Resource, "Warden HTTP proxy")
		if p := strings.TrimSuffix(hu.Path, "/"); p != "" {
			mux.Handle("GET /.well-known/oauth-protected-resource"+p, pm)
		} else {
			root = pm
		}
	}
	mux.Handle("GET /.well-known/oauth-protected-resource", root)
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

// Sessions are the session taints of the gateway's enforcement points,
// for others in the same process to share.
func (g *Gateway) Sessions() *enforce.Sessions { return g.sessions }

// Limits are the gateway's per-agent rate limits, for others in the same
// process to share.
func (g *Gateway) Limits() *enforce.Limiter { return g.auth.Limits }

// Handler serves agents: the MCP endpoint at the public URL's path, and
// the protected resource metadata.
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

// metadata serves the RFC 9728 protected resource metadata of a resource.
func (g *Gateway) metadata(resource, name string) http.Handler {
	body, _ := json.Marshal(map[string]any{
		"resource":                          resource,
		"resource_name":                     name,
		"authorization_servers":             []string{g.issuer},
		"bearer_methods_supported":          []string{"header"},
		"dpop_bound_access_tokens_required": false,
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Write(body)
	})
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

// checkHeaders refuses a request whose Mcp-Method or Mcp-Name header names
// another method or name than its body: nothing is authorized on one name
// and executed on another, whatever the protocol version.
func checkHeaders(h http.Header, method, name string) error {
	if v := h.Get("Mcp-Method"); v != "" && v != method {
		return &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: fmt.Sprintf("the Mcp-Method header %q does not match the method %q", v, method)}
	}
	if v := h.Get("Mcp-Name"); v != "" && v != name {
		return &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: fmt.Sprintf("the Mcp-Name header %q does not match the name %q", v, name)}
	}
	return nil
}

// header is a request's HTTP header (nil when it did not come over HTTP).
func header(req mcp.Request) http.Header {
	if extra := req.GetExtra(); extra != nil {
		return extra.Header
	}
	return nil
}

// mcpSession is the id of a request's MCP session, "" when it has none.
func mcpSession(req mcp.Request) string {
	if s := req.GetSession(); s != nil {
		return s.ID()
	}
	return ""
}

// sessionKey is where a session's taints are kept: the agent's task when
// it names one (Warden-Task), otherwise its MCP session (sid).
func sessionKey(c *enforce.Caller, sid string) string {
	if c.Task != "" {
		return "task:" + c.Agent + "\x00" + c.Task
	}
	if sid != "" {
		return "mcp:" + c.Agent + "\x00" + sid
	}
	return "agent:" + c.Agent
}

// request builds a decision request for an action of c in MCP session sid.
func (g *Gateway) request(c *enforce.Caller, sid string, action, kind, id string, attrs map[string]any, args json.RawMessage) *decide.Request {
	key := sessionKey(c, sid)
	if c.Task != "" {
		sid = c.Task
	}
	dr := &decide.Request{Token: c.Token, Action: action, Resource: decide.Resource{Kind: kind, ID: id, Attributes: attrs}, Args: args,
		Context: decide.RequestContext{Source: decide.Source{IP: c.IP}, Session: decide.Session{ID: sid, Taints: g.sessions.Taints(key)}}}
	if g.proof != nil {
		var err error
		if dr.DPoP, dr.HTM, dr.HTU, err = g.proof(c.Token); err != nil {
			g.lg.Warn("gateway: cannot sign a DPoP proof for a decision", "err", err)
		}
	}
	return dr
}

// decide asks for a decision and turns anything but an allow into the
// JSON-RPC error the agent gets.
func (g *Gateway) decide(ctx context.Context, dr *decide.Request) (decide.Decision, error) {
	d, err := g.dec.Decide(ctx, dr)
	if err != nil {
		return d, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: err.Error()}
	}
	data, _ := json.Marshal(map[string]string{"decision_id": d.ID})
	switch {
	case d.Outcome == policy.Allow:
		return d, nil
	case d.ID == "":
		return d, &jsonrpc.Error{Code: CodeDenied, Message: "denied: no decision could be made"}
	case d.Outcome == policy.PendingApproval:
		return d, &jsonrpc.Error{Code: CodeApprovalRequired, Message: "approval required (decision " + d.ID + ")", Data: data}
	default:
		return d, &jsonrpc.Error{Code: CodeDenied, Message: "denied by policy (decision " + d.ID + ")", Data: data}
	}
}

// redactions are the fields decision d says to redact. An obligation the
// gateway cannot read is a refusal, before anything is forwarded.
func (g *Gateway) redactions(d decide.Decision) ([][]string, error) {
	fields, err := enforce.Redactions(d.Obligations)
	if err != nil {
		g.lg.Warn("gateway: a decision's obligations cannot be applied; refused", "decision_id", d.ID, "err", err)
		data, _ := json.Marshal(map[string]string{"decision_id": d.ID})
		return nil, &jsonrpc.Error{Code: CodeDenied, Message: "denied: the obligations of decision " + d.ID + " cannot be applied", Data: data}
	}
	return fields, nil
}

// unredactable is what the agent is told when an answer of u that policy
// says to redact cannot be: nothing of it.
func (g *Gateway) unredactable(u *upstream, err error) error {
	g.lg.Warn("gateway: an answer could not be redacted; withheld", "upstream", u.cfg.Name, "err", err)
	return &jsonrpc.Error{Code: CodeUpstream, Message: "the answer of upstream " + u.cfg.Name + " could not be redacted as policy requires"}
}

// upstreamError is what agent c, in session sid, is told when upstream u
// failed. An error the upstream answered with is its own words: they
// reach the agent (and taint its session as a result would), unless the
// decision redacts what the upstream says, when only the code does.
func (g *Gateway) upstreamError(c *enforce.Caller, sid string, u *upstream, err error, redacted bool) error {
	var rpc *jsonrpc.Error
	if ownAnswer(err) && errors.As(err, &rpc) {
		g.taint(c, sid, u)
		if redacted {
			return &jsonrpc.Error{Code: rpc.Code, Message: "upstream " + u.cfg.Name + " answered with an error"}
		}
		return rpc
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	// What failed (addresses, commands) is in the log; the agent learns
	// only which server.
	return &jsonrpc.Error{Code: CodeUpstream, Message: "upstream " + u.cfg.Name + " unavailable"}
}

// canonicalArgs re-encodes a call's arguments, a JSON object or nothing.
func canonicalArgs(raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, errors.New("arguments: must be a JSON object")
	}
	return json.Marshal(m)
}

// split parses "<server>__<name>" (a wrap's names are the server's own).
func (g *Gateway) split(qualified string) (*upstream, string, bool) {
	if g.single != nil {
		return g.single, qualified, qualified != ""
	}
	server, name, ok := strings.Cut(qualified, separator)
	if !ok || name == "" {
		return nil, "", false
	}
	u, ok := g.ups[server]
	return u, name, ok
}

func (g *Gateway) toolAttrs(u *upstream, tool string) map[string]any {
	a := u.cfg.Tools[tool]
	if a == nil {
		return nil
	}
	out := make(map[string]any, len(a))
	for k, v := range a {
		out[k] = v
	}
	return out
}

func (g *Gateway) listTools(ctx context.Context, c *enforce.Caller, r *mcp.ListToolsRequest) (mcp.Result, error) {
	out := &mcp.ListToolsResult{Tools: []*mcp.Tool{}}
	for _, u := range g.order {
		offer, err := u.offers(ctx)
		if err != nil {
			continue // its tools are not listed while it is unavailable
		}
		for _, t := range offer.tools {
			if !g.dec.MayAllow(ctx, g.request(c, mcpSession(r), "tools/call", "mcp.tool", u.cfg.Resource+"/"+t.Name, g.toolAttrs(u, t.Name), nil)) {
				continue
			}
			cp := *t
			cp.Name = g.visible(u, t.Name)
			out.Tools = append(out.Tools, &cp)
		}
	}
	return out, nil
}

func (g *Gateway) callTool(ctx context.Context, c *enforce.Caller, r *mcp.CallToolRequest) (mcp.Result, error) {
	var progress func(*mcp.ProgressNotificationParams)
	if token := r.Params.GetProgressToken(); token != nil && r.Session != nil {
		// The upstream's progress reaches the agent under the agent's token.
		progress = func(p *mcp.ProgressNotificationParams) {
			r.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Progress: p.Progress, Total: p.Total, Message: p.Message})
		}
	}
	raw, err := g.toolCall(ctx, c, header(r), mcpSession(r), r.Params.Name, r.Params.Arguments, progress)
	if err != nil {
		return nil, err
	}
	res := new(mcp.CallToolResult)
	if err := json.Unmarshal(raw, res); err != nil {
		return nil, &jsonrpc.Error{Code: CodeUpstream, Message: "upstream answer is not a tool result"}
	}
	return res, nil
}

// toolCall decides a tools/call of c in MCP session sid (h is its HTTP
// header) and forwards it. The result is the upstream's, redacted when the
// decision says so; progress, when not nil, gets the upstream's progress
// notifications.
func (g *Gateway) toolCall(ctx context.Context, c *enforce.Caller, h http.Header, sid, name string, rawArgs json.RawMessage, progress func(*mcp.ProgressNotificationParams)) (json.RawMessage, error) {
	if err := checkHeaders(h, "tools/call", name); err != nil {
		return nil, err
	}
	u, tool, ok := g.split(name)
	if !ok {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("unknown tool %q", name)}
	}
	// The upstream gets the arguments policy decided on, re-encoded: a key
	// given twice, which parsers may read differently, is given once.
	args, err := canonicalArgs(rawArgs)
	if err != nil {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: err.Error()}
	}
	d, err := g.decide(ctx, g.request(c, sid, "tools/call", "mcp.tool", u.cfg.Resource+"/"+tool, g.toolAttrs(u, tool), args))
	if err != nil {
		return nil, err
	}
	// The agent's _meta stays here: it holds its own protocol version and
	// progress token, which are not the upstream session's. Progress
	// messages are free text: when the result is redacted, only the
	// figures are passed on.
	fields, err := g.redactions(d)
	if err != nil {
		return nil, err
	}
	if progress != nil {
		agent := progress
		progress = func(p *mcp.ProgressNotificationParams) {
			g.taint(c, sid, u) // the upstream's words reach the agent now
			if len(fields) > 0 {
				p = &mcp.ProgressNotificationParams{Progress: p.Progress, Total: p.Total}
			}
			agent(p)
		}
	}
	res, err := u.callTool(ctx, tool, args, progress)
	if err != nil {
		return nil, g.upstreamError(c, sid, u, err, len(fields) > 0)
	}
	g.taint(c, sid, u)
	if len(fields) > 0 {
		var out mcp.CallToolResult
		if err := json.Unmarshal(res, &out); err != nil {
			return nil, g.unredactable(u, err)
		}
		if err := redactToolResult(&out, fields); err != nil {
			return nil, g.unredactable(u, err)
		}
		return json.Marshal(&out)
	}
	return res, nil
}

func (g *Gateway) listResources(ctx context.Context, c *enforce.Caller, r *mcp.ListResourcesRequest) (mcp.Result, error) {
	out := &mcp.ListResourcesResult{Resources: []*mcp.Resource{}}
	for _, u := range g.order {
		offer, err := u.offers(ctx)
		if err != nil {
			continue
		}
		for _, res := range offer.resources {
			if g.dec.MayAllow(ctx, g.request(c, mcpSession(r), "resources/read", "mcp.resource", u.cfg.Resource+"/"+res.Name, nil, nil)) {
				out.Resources = append(out.Resources, res)
			}
		}
	}
	return out, nil
}

func (g *Gateway) listTemplates(ctx context.Context, c *enforce.Caller, r *mcp.ListResourceTemplatesRequest) (mcp.Result, error) {
	out := &mcp.ListResourceTemplatesResult{ResourceTemplates: []*mcp.ResourceTemplate{}}
	for _, u := range g.order {
		offer, err := u.offers(ctx)
		if err != nil {
			continue
		}
		for _, t := range offer.templates {
			if g.dec.MayAllow(ctx, g.request(c, mcpSession(r), "resources/read", "mcp.resource", u.cfg.Resource+"/"+t.Name, nil, nil)) {
				out.ResourceTemplates = append(out.ResourceTemplates, t.ResourceTemplate)
			}
		}
	}
	return out, nil
}

// owner finds the upstream that offers a resource URI: the first that
// lists it, else the first with a template that matches it. It returns the
// name policy knows it by, and for a template the values of its variables
// (and the URI) as the arguments.
func (g *Gateway) owner(ctx context.Context, uri string) (*upstream, string, json.RawMessage) {
	var offers []catalogue
	for _, u := range g.order {
		offer, err := u.offers(ctx)
		offers = append(offers, offer)
		if err != nil {
			continue
		}
		for _, res := range offer.resources {
			if res.URI == uri {
				return u, res.Name, nil
			}
		}
	}
	for i, u := range g.order {
		for _, t := range offers[i].templates {
			values := t.uri.Match(uri)
			if values == nil {
				continue
			}
			args := map[string]any{"uri": uri}
			for _, name := range t.uri.Varnames() {
				v := values.Get(name)
				if !v.Valid() {
					continue
				}
				switch v.T {
				case uritemplate.ValueTypeString:
					args[name] = v.String()
				case uritemplate.ValueTypeList:
					args[name] = v.List()
				case uritemplate.ValueTypeKV:
					args[name] = v.KV()
				}
			}
			raw, _ := json.Marshal(args)
			return u, t.Name, raw
		}
	}
	return nil, "", nil
}

func (g *Gateway) readResource(ctx context.Context, c *enforce.Caller, r *mcp.ReadResourceRequest) (mcp.Result, error) {
	if err := checkHeaders(header(r), "resources/read", r.Params.URI); err != nil {
		return nil, err
	}
	u, name, args := g.owner(ctx, r.Params.URI)
	if u == nil {
		return nil, mcp.ResourceNotFoundError(r.Params.URI)
	}
	d, err := g.decide(ctx, g.request(c, mcpSession(r), "resources/read", "mcp.resource", u.cfg.Resource+"/"+name, nil, args))
	if err != nil {
		return nil, err
	}
	fields, err := g.redactions(d)
	if err != nil {
		return nil, err
	}
	out, err := call(ctx, u, func(ctx context.Context, s *mcp.ClientSession) (*mcp.ReadResourceResult, error) {
		return s.ReadResource(ctx, &mcp.ReadResourceParams{URI: r.Params.URI})
	})
	if err != nil {
		return nil, g.upstreamError(c, mcpSession(r), u, err, len(fields) > 0)
	}
	g.taint(c, mcpSession(r), u)
	if len(fields) > 0 {
		for _, rc := range out.Contents {
			if len(rc.Blob) > 0 {
				return nil, g.unredactable(u, enforce.ErrCannotRedact)
			}
			if rc.Text, err = enforce.RedactJSON(rc.Text, fields); err != nil {
				return nil, g.unredactable(u, err)
			}
		}
	}
	return out, nil
}

func (g *Gateway) listPrompts(ctx context.Context, c *enforce.Caller, r *mcp.ListPromptsRequest) (mcp.Result, error) {
	out := &mcp.ListPromptsResult{Prompts: []*mcp.Prompt{}}
	for _, u := range g.order {
		offer, err := u.offers(ctx)
		if err != nil {
			continue
		}
		for _, p := range offer.prompts {
			if !g.dec.MayAllow(ctx, g.request(c, mcpSession(r), "prompts/get", "mcp.prompt", u.cfg.Resource+"/"+p.Name, nil, nil)) {
				continue
			}
			cp := *p
			cp.Name = g.visible(u, p.Name)
			out.Prompts = append(out.Prompts, &cp)
		}
	}
	return out, nil
}

func (g *Gateway) getPrompt(ctx context.Context, c *enforce.Caller, r *mcp.GetPromptRequest) (mcp.Result, error) {
	if err := checkHeaders(header(r), "prompts/get", r.Params.Name); err != nil {
		return nil, err
	}
	u, name, ok := g.split(r.Params.Name)
	if !ok {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("unknown prompt %q", r.Params.Name)}
	}
	args, _ := json.Marshal(r.Params.Arguments)
	d, err := g.decide(ctx, g.request(c, mcpSession(r), "prompts/get", "mcp.prompt", u.cfg.Resource+"/"+name, nil, args))
	if err != nil {
		return nil, err
	}
	fields, err := g.redactions(d)
	if err != nil {
		return nil, err
	}
	out, err := call(ctx, u, func(ctx context.Context, s *mcp.ClientSession) (*mcp.GetPromptResult, error) {
		return s.GetPrompt(ctx, &mcp.GetPromptParams{Name: name, Arguments: r.Params.Arguments})
	})
	if err != nil {
		return nil, g.upstreamError(c, mcpSession(r), u, err, len(fields) > 0)
	}
	g.taint(c, mcpSession(r), u)
	if len(fields) > 0 {
		if err := redactPrompt(out, fields); err != nil {
			return nil, g.unredactable(u, err)
		}
	}
	return out, nil
}

// visible is the name agents see for an upstream's tool or prompt.
func (g *Gateway) visible(u *upstream, name string) string {
	if g.single != nil {
		return name
	}
	return u.cfg.Name + separator + name
}

// taint marks the session after content from an untrusted upstream
// entered it.
func (g *Gateway) taint(c *enforce.Caller, sid string, u *upstream) {
	if u.cfg.Trust == Untrusted {
		g.sessions.Add(sessionKey(c, sid), TaintUntrusted)
	}
}
