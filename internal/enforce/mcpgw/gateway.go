package mcpgw

import (
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

	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/enforce"
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
	sessions *sessions
	limits   *limiter
	handler  http.Handler
	metaURL  string
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
		sessions: newSessions(cfg.SessionTimeout), limits: newLimiter(cfg.RateLimit)}
	for _, s := range cfg.Servers {
		u := newUpstream(s, cfg.UpstreamTimeout, lg)
		g.ups[s.Name] = u
		g.order = append(g.order, u)
	}
	pub, _ := url.Parse(cfg.PublicURL)
	g.metaURL = pub.Scheme + "://" + pub.Host + "/.well-known/oauth-protected-resource" + strings.TrimSuffix(pub.Path, "/")

	server := mcp.NewServer(&mcp.Implementation{Name: "warden-gateway", Title: "Warden MCP gateway", Version: "1"}, &mcp.ServerOptions{
		Capabilities: &mcp.ServerCapabilities{
			Tools:     &mcp.ToolCapabilities{},
			Resources: &mcp.ResourceCapabilities{},
			Prompts:   &mcp.PromptCapabilities{},
		},
		// Every list is made for the agent that asked.
		SetCacheable: func(_ context.Context, _ mcp.Request, c *mcp.Cacheable) { c.CacheScope = "private"; c.TTLMs = 0 },
		Logger:       lg,
	})
	server.AddReceivingMiddleware(g.intercept)
	streamable := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, &mcp.StreamableHTTPOptions{
		SessionTimeout:      cfg.SessionTimeout,
		MaxRequestBodyBytes: cfg.MaxRequestBytes,
		Logger:              lg,
	})
	// The SDK binds a session to the user of the request that made it:
	// here the agent, whose identity the edge has checked.
	bind := auth.RequireBearerToken(func(ctx context.Context, _ string, r *http.Request) (*auth.TokenInfo, error) {
		c, ok := ctx.Value(callerKey{}).(*caller)
		if !ok {
			return nil, auth.ErrInvalidToken
		}
		return &auth.TokenInfo{UserID: c.agent, Expiration: c.expiry, Scopes: c.roles, Extra: map[string]any{callerExtra: c}}, nil
	}, nil)

	mux := http.NewServeMux()
	meta := g.metadata()
	mux.Handle("GET /.well-known/oauth-protected-resource", meta)
	mux.Handle("GET "+strings.TrimPrefix(g.metaURL, pub.Scheme+"://"+pub.Host), meta)
	mux.Handle(pub.Path, g.edge(bind(streamable)))
	g.handler = mux
	return g, nil
}

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
	for _, u := range g.order {
		u.close()
	}
}

// metadata serves the RFC 9728 protected resource metadata.
func (g *Gateway) metadata() http.Handler {
	body, _ := json.Marshal(map[string]any{
		"resource":                          g.cfg.PublicURL,
		"resource_name":                     "Warden MCP gateway",
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

// caller is the agent behind one HTTP request, as the edge authenticated it.
type caller struct {
	token  string
	agent  string
	roles  []string
	expiry time.Time
	ip     string
	task   string
}

type callerKey struct{}

const callerExtra = "warden.caller"

// edge authenticates every HTTP request before the MCP layer sees it: the
// access token (signature, issuer, expiry, revocation, key binding) must
// have been issued for this gateway, and its DPoP proof, when given or
// required, must sign this request. Failures are 401 with a
// WWW-Authenticate challenge that points at the resource metadata. An
// agent that is quarantined or disabled gets through to be denied, and
// recorded, by the decision on its next action.
func (g *Gateway) edge(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		creds, err := enforce.ReadCredentials(r)
		if err != nil {
			g.challenge(w, "Bearer", "", err)
			return
		}
		tok, err := g.ver.VerifyRequest(r.Context(), identity.Request{Token: creds.Token, DPoP: creds.Proof, Method: r.Method, URL: g.cfg.PublicURL})
		var inactive *identity.AgentInactiveError
		switch {
		case errors.As(err, &inactive):
			if tok, err = g.ver.Inspect(creds.Token); err != nil {
				g.challenge(w, creds.Scheme, "invalid_token", err)
				return
			}
		case errors.Is(err, identity.ErrUnavailable):
			g.lg.Warn("gateway: cannot authenticate: state unavailable", "err", err)
			http.Error(w, "authentication temporarily unavailable", http.StatusServiceUnavailable)
			return
		case errors.Is(err, identity.ErrDPoP) || errors.Is(err, identity.ErrDPoPKeyMismatch) || errors.Is(err, identity.ErrReplay):
			g.challenge(w, "DPoP", "invalid_dpop_proof", err)
			return
		case errors.Is(err, identity.ErrDPoPRequired):
			g.challenge(w, "DPoP", "invalid_token", err)
			return
		case err != nil:
			g.challenge(w, creds.Scheme, "invalid_token", err)
			return
		}
		if !tok.Audience.Contains(g.cfg.PublicURL) {
			g.challenge(w, creds.Scheme, "invalid_token", fmt.Errorf("the token was not issued for this resource (%s); ask the token endpoint with resource=%s", g.cfg.PublicURL, g.cfg.PublicURL))
			return
		}
		if !g.limits.allow(tok.Subject) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "rate limit exceeded", http.StatusTooManyRequests)
			return
		}
		c := &caller{token: creds.Token, agent: tok.Subject, roles: tok.Roles, expiry: tok.Expiry,
			ip: enforce.SourceIP(r), task: r.Header.Get("Warden-Task")}
		// The SDK reads a bearer token; the edge has checked the real one.
		r = r.WithContext(context.WithValue(r.Context(), callerKey{}, c))
		r.Header.Set("Authorization", "Bearer "+creds.Token)
		next.ServeHTTP(w, r)
	})
}

// challenge answers 401 with an RFC 6750 / RFC 9449 challenge.
func (g *Gateway) challenge(w http.ResponseWriter, scheme, code string, err error) {
	params := []string{fmt.Sprintf("resource_metadata=%q", g.metaURL)}
	if code != "" {
		desc := strings.NewReplacer(`"`, "'", "\\", "/").Replace(err.Error())
		params = append(params, fmt.Sprintf("error=%q", code), fmt.Sprintf("error_description=%q", desc))
	}
	if scheme == "DPoP" {
		params = append(params, `algs="EdDSA ES256"`)
	}
	w.Header().Set("WWW-Authenticate", scheme+" "+strings.Join(params, ", "))
	http.Error(w, "unauthorized: "+err.Error(), http.StatusUnauthorized)
}

// intercept is the MCP middleware: it answers every list from the
// upstreams' offers, filtered for the agent, and decides every call before
// it is forwarded. Anything else (initialize, ping) is the gateway's own.
func (g *Gateway) intercept(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		switch r := req.(type) {
		case *mcp.ListToolsRequest:
			return withCaller(r, func(c *caller) (mcp.Result, error) { return g.listTools(ctx, c, r) })
		case *mcp.CallToolRequest:
			return withCaller(r, func(c *caller) (mcp.Result, error) { return g.callTool(ctx, c, r) })
		case *mcp.ListResourcesRequest:
			return withCaller(r, func(c *caller) (mcp.Result, error) { return g.listResources(ctx, c, r) })
		case *mcp.ReadResourceRequest:
			return withCaller(r, func(c *caller) (mcp.Result, error) { return g.readResource(ctx, c, r) })
		case *mcp.ListResourceTemplatesRequest:
			return &mcp.ListResourceTemplatesResult{ResourceTemplates: []*mcp.ResourceTemplate{}}, nil
		case *mcp.ListPromptsRequest:
			return withCaller(r, func(c *caller) (mcp.Result, error) { return g.listPrompts(ctx, c, r) })
		case *mcp.GetPromptRequest:
			return withCaller(r, func(c *caller) (mcp.Result, error) { return g.getPrompt(ctx, c, r) })
		case *mcp.SubscribeRequest, *mcp.UnsubscribeRequest, *mcp.CompleteRequest:
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeMethodNotFound, Message: method + " is not offered through the gateway"}
		}
		return next(ctx, method, req)
	}
}

// withCaller runs f for the request's authenticated agent; a request
// without one is refused (it cannot happen behind the edge).
func withCaller(req mcp.Request, f func(*caller) (mcp.Result, error)) (mcp.Result, error) {
	extra := req.GetExtra()
	if extra == nil || extra.TokenInfo == nil {
		return nil, &jsonrpc.Error{Code: CodeDenied, Message: "not authenticated"}
	}
	c, ok := extra.TokenInfo.Extra[callerExtra].(*caller)
	if !ok {
		return nil, &jsonrpc.Error{Code: CodeDenied, Message: "not authenticated"}
	}
	return f(c)
}

// checkHeaders refuses a request whose Mcp-Method or Mcp-Name header names
// another method or name than its body: nothing is authorized on one name
// and executed on another, whatever the protocol version.
func checkHeaders(req mcp.Request, method, name string) error {
	h := req.GetExtra().Header
	if v := h.Get("Mcp-Method"); v != "" && v != method {
		return &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: fmt.Sprintf("the Mcp-Method header %q does not match the method %q", v, method)}
	}
	if v := h.Get("Mcp-Name"); v != "" && v != name {
		return &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: fmt.Sprintf("the Mcp-Name header %q does not match the name %q", v, name)}
	}
	return nil
}

// sessionKey is where a session's taints are kept: the agent's task when
// it names one (Warden-Task), otherwise its MCP session.
func sessionKey(c *caller, req mcp.Request) string {
	if c.task != "" {
		return "task:" + c.agent + "\x00" + c.task
	}
	if s := req.GetSession(); s != nil && s.ID() != "" {
		return "mcp:" + c.agent + "\x00" + s.ID()
	}
	return "agent:" + c.agent
}

// request builds a decision request for an action of c.
func (g *Gateway) request(c *caller, req mcp.Request, action, kind, id string, attrs map[string]any, args json.RawMessage) *decide.Request {
	key := sessionKey(c, req)
	sid := ""
	if s := req.GetSession(); s != nil {
		sid = s.ID()
	}
	if c.task != "" {
		sid = c.task
	}
	return &decide.Request{Token: c.token, Action: action, Resource: decide.Resource{Kind: kind, ID: id, Attributes: attrs}, Args: args,
		Context: decide.RequestContext{Source: decide.Source{IP: c.ip}, Session: decide.Session{ID: sid, Taints: g.sessions.taints(key)}}}
}

// decide asks for a decision and turns anything but an allow into the
// JSON-RPC error the agent gets.
func (g *Gateway) decide(ctx context.Context, dr *decide.Request) (decide.Decision, error) {
	d, err := g.dec.Decide(ctx, dr)
	if err != nil {
		return d, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: err.Error()}
	}
	data, _ := json.Marshal(map[string]string{"decision_id": d.ID})
	switch d.Outcome {
	case policy.Allow:
		return d, nil
	case policy.PendingApproval:
		return d, &jsonrpc.Error{Code: CodeApprovalRequired, Message: "approval required (decision " + d.ID + ")", Data: data}
	default:
		return d, &jsonrpc.Error{Code: CodeDenied, Message: "denied by policy (decision " + d.ID + ")", Data: data}
	}
}

// upstreamError is what the agent is told when an upstream failed.
func upstreamError(err error) error {
	var rpc *jsonrpc.Error
	if ownAnswer(err) && errors.As(err, &rpc) {
		return rpc
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return &jsonrpc.Error{Code: CodeUpstream, Message: "upstream unavailable: " + err.Error()}
}

// split parses "<server>__<name>".
func (g *Gateway) split(qualified string) (*upstream, string, bool) {
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

func (g *Gateway) listTools(ctx context.Context, c *caller, r *mcp.ListToolsRequest) (mcp.Result, error) {
	out := &mcp.ListToolsResult{Tools: []*mcp.Tool{}}
	for _, u := range g.order {
		offer, err := u.offers(ctx)
		if err != nil {
			continue // its tools are not listed while it is unavailable
		}
		for _, t := range offer.tools {
			if !g.dec.MayAllow(ctx, g.request(c, r, "tools/call", "mcp.tool", u.cfg.Resource+"/"+t.Name, g.toolAttrs(u, t.Name), nil)) {
				continue
			}
			cp := *t
			cp.Name = u.cfg.Name + separator + t.Name
			out.Tools = append(out.Tools, &cp)
		}
	}
	return out, nil
}

func (g *Gateway) callTool(ctx context.Context, c *caller, r *mcp.CallToolRequest) (mcp.Result, error) {
	if err := checkHeaders(r, "tools/call", r.Params.Name); err != nil {
		return nil, err
	}
	u, tool, ok := g.split(r.Params.Name)
	if !ok {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("unknown tool %q", r.Params.Name)}
	}
	d, err := g.decide(ctx, g.request(c, r, "tools/call", "mcp.tool", u.cfg.Resource+"/"+tool, g.toolAttrs(u, tool), r.Params.Arguments))
	if err != nil {
		return nil, err
	}
	params := &mcp.CallToolParams{Meta: r.Params.Meta, Name: tool}
	if len(r.Params.Arguments) > 0 {
		params.Arguments = r.Params.Arguments
	}
	res, err := call(ctx, u, func(ctx context.Context, s *mcp.ClientSession) (*mcp.CallToolResult, error) {
		return s.CallTool(ctx, params)
	})
	if err != nil {
		return nil, upstreamError(err)
	}
	g.taint(c, r, u)
	if fields := redactions(d.Obligations); len(fields) > 0 {
		redactToolResult(res, fields)
	}
	return res, nil
}

func (g *Gateway) listResources(ctx context.Context, c *caller, r *mcp.ListResourcesRequest) (mcp.Result, error) {
	out := &mcp.ListResourcesResult{Resources: []*mcp.Resource{}}
	for _, u := range g.order {
		offer, err := u.offers(ctx)
		if err != nil {
			continue
		}
		for _, res := range offer.resources {
			if g.dec.MayAllow(ctx, g.request(c, r, "resources/read", "mcp.resource", u.cfg.Resource+"/"+res.Name, nil, nil)) {
				out.Resources = append(out.Resources, res)
			}
		}
	}
	return out, nil
}

// owner finds the upstream that lists a resource URI, and the resource.
func (g *Gateway) owner(ctx context.Context, uri string) (*upstream, *mcp.Resource) {
	for _, u := range g.order {
		offer, err := u.offers(ctx)
		if err != nil {
			continue
		}
		for _, res := range offer.resources {
			if res.URI == uri {
				return u, res
			}
		}
	}
	return nil, nil
}

func (g *Gateway) readResource(ctx context.Context, c *caller, r *mcp.ReadResourceRequest) (mcp.Result, error) {
	if err := checkHeaders(r, "resources/read", r.Params.URI); err != nil {
		return nil, err
	}
	u, res := g.owner(ctx, r.Params.URI)
	if u == nil {
		return nil, mcp.ResourceNotFoundError(r.Params.URI)
	}
	d, err := g.decide(ctx, g.request(c, r, "resources/read", "mcp.resource", u.cfg.Resource+"/"+res.Name, nil, nil))
	if err != nil {
		return nil, err
	}
	out, err := call(ctx, u, func(ctx context.Context, s *mcp.ClientSession) (*mcp.ReadResourceResult, error) {
		return s.ReadResource(ctx, &mcp.ReadResourceParams{URI: r.Params.URI})
	})
	if err != nil {
		return nil, upstreamError(err)
	}
	g.taint(c, r, u)
	if fields := redactions(d.Obligations); len(fields) > 0 {
		for _, rc := range out.Contents {
			rc.Text = redactJSONText(rc.Text, fields)
		}
	}
	return out, nil
}

func (g *Gateway) listPrompts(ctx context.Context, c *caller, r *mcp.ListPromptsRequest) (mcp.Result, error) {
	out := &mcp.ListPromptsResult{Prompts: []*mcp.Prompt{}}
	for _, u := range g.order {
		offer, err := u.offers(ctx)
		if err != nil {
			continue
		}
		for _, p := range offer.prompts {
			if !g.dec.MayAllow(ctx, g.request(c, r, "prompts/get", "mcp.prompt", u.cfg.Resource+"/"+p.Name, nil, nil)) {
				continue
			}
			cp := *p
			cp.Name = u.cfg.Name + separator + p.Name
			out.Prompts = append(out.Prompts, &cp)
		}
	}
	return out, nil
}

func (g *Gateway) getPrompt(ctx context.Context, c *caller, r *mcp.GetPromptRequest) (mcp.Result, error) {
	if err := checkHeaders(r, "prompts/get", r.Params.Name); err != nil {
		return nil, err
	}
	u, name, ok := g.split(r.Params.Name)
	if !ok {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("unknown prompt %q", r.Params.Name)}
	}
	args, _ := json.Marshal(r.Params.Arguments)
	if _, err := g.decide(ctx, g.request(c, r, "prompts/get", "mcp.prompt", u.cfg.Resource+"/"+name, nil, args)); err != nil {
		return nil, err
	}
	out, err := call(ctx, u, func(ctx context.Context, s *mcp.ClientSession) (*mcp.GetPromptResult, error) {
		return s.GetPrompt(ctx, &mcp.GetPromptParams{Name: name, Arguments: r.Params.Arguments})
	})
	if err != nil {
		return nil, upstreamError(err)
	}
	g.taint(c, r, u)
	return out, nil
}

// taint marks the session after content from an untrusted upstream
// entered it.
func (g *Gateway) taint(c *caller, req mcp.Request, u *upstream) {
	if u.cfg.Trust == Untrusted {
		g.sessions.add(sessionKey(c, req), TaintUntrusted)
	}
}
