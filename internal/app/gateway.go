package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"golang.org/x/net/netutil"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/enforce"
	"github.com/warden-run/warden/internal/enforce/extauthz"
	"github.com/warden-run/warden/internal/enforce/httpproxy"
	"github.com/warden-run/warden/internal/enforce/mcpgw"
	"github.com/warden-run/warden/internal/provenance"
	"github.com/warden-run/warden/internal/store"
)

// GatewayPEP is the enforcement point name of a gateway that runs inside
// the server, unless its configuration names another.
const GatewayPEP = "mcp-gateway"

// LoadGateway reads the gateway file cfg names, if any, and lets tokens be
// issued for the gateway: its public URL (and its HTTP proxy's and
// ext_authz's resources) become identity resources. Call it before New.
func LoadGateway(cfg *config.Config) (*GatewayConfig, error) {
	if cfg.Gateway == "" {
		return nil, nil
	}
	g, err := LoadGatewayConfig(cfg.Gateway)
	if err != nil {
		return nil, err
	}
	add := func(resource string) {
		if !slices.Contains(cfg.Identity.Resources, resource) {
			cfg.Identity.Resources = append(cfg.Identity.Resources, resource)
		}
	}
	if len(g.MCP.Servers) > 0 {
		add(g.MCP.PublicURL)
	}
	if len(g.HTTP.Routes) > 0 {
		add(g.HTTP.Resource)
	}
	if g.ExtAuthz.Listen != "" {
		add(g.ExtAuthz.Resource)
	}
	return &g, nil
}

// Gateway is the enforcement points of one gateway.yaml, composed: the MCP
// gateway and the HTTP proxy on one listener, the Envoy authorization
// server on its own. They share the per-agent rate limits; the taints of
// the agents are the decision point's.
type Gateway struct {
	cfg      GatewayConfig
	MCP      *mcpgw.Gateway
	Proxy    *httpproxy.Proxy
	ExtAuthz *extauthz.Server
	handler  http.Handler
	conns    *enforce.Conns
	usage    *usageRecorder // what the MCP gateway relayed to each agent
}

// Conns counts the connections each agent holds.
func (g *Gateway) Conns() *enforce.Conns { return g.conns }

// Handler serves the listener: the MCP endpoint, the proxy's routes and
// the protected resource metadata of each.
func (g *Gateway) Handler() http.Handler { return g.handler }

// Connect connects the MCP gateway's upstreams now.
func (g *Gateway) Connect(ctx context.Context) {
	if g.MCP != nil {
		g.MCP.Connect(ctx)
	}
}

// Close disconnects the MCP gateway's upstreams.
func (g *Gateway) Close() {
	if g.MCP != nil {
		g.MCP.Close()
	}
}

// NewGateway makes the enforcement points of gc, deciding in this process.
func (a *App) NewGateway(gc GatewayConfig) (*Gateway, error) {
	if err := gc.Check(); err != nil {
		return nil, err
	}
	g := &Gateway{cfg: gc}
	limits := enforce.NewLimiter(*gc.RateLimit)
	g.conns = enforce.NewConns(gc.Limits.MaxConnectionsPerAgent, gc.Limits.MaxConnectionsPerSource)
	issuer := a.cfg.Identity.Issuer
	edge := func(resource string) *enforce.Edge {
		u, _ := url.Parse(resource)
		return &enforce.Edge{Verifier: a.Verifier, Resource: resource, MetadataURL: enforce.MetadataURL(u.Scheme, u.Host, u.Path),
			Limits: limits, Conns: g.conns, Log: a.log}
	}
	mux := http.NewServeMux()
	var root http.Handler
	// What agents read, shared by the MCP gateway and the HTTP proxy: an
	// agent that reads through one and acts through the other is followed.
	prov := provenance.NewStore(0, 0)
	prov.ForgetAgents(func(agent string) bool {
		rec, ok := a.View.Agent(agent)
		return !ok || rec.Status == store.StatusDisabled
	})
	if len(gc.MCP.Servers) > 0 || len(gc.HTTP.Routes) > 0 {
		name := gc.MCP.Name
		if name == "" {
			name = "mcp-gateway"
		}
		g.usage = newUsageRecorder(a.Audit, name, a.log)
	}
	if len(gc.MCP.Servers) > 0 {
		var err error
		gc.MCP.Relayed = g.usage.relayed
		g.MCP, err = mcpgw.New(gc.MCP, mcpgw.Deps{Decider: enforce.Local{Pipeline: a.Decide, Name: gc.MCP.Name, Audiences: []string{gc.MCP.PublicURL}},
			Verifier: a.Verifier, Issuer: issuer, Limits: limits, Conns: g.conns, Logger: a.log, Provenance: prov})
		if err != nil {
			return nil, err
		}
		pub, _ := url.Parse(gc.MCP.PublicURL)
		mux.Handle(pub.Path, g.MCP.Handler())
		mux.Handle("GET /.well-known/oauth-protected-resource"+strings.TrimSuffix(pub.Path, "/"), g.MCP.Handler())
		root = enforce.ResourceMetadata(gc.MCP.PublicURL, "Warden MCP gateway", issuer)
	}
	if len(gc.HTTP.Routes) > 0 {
		g.Proxy = httpproxy.New(gc.HTTP, httpproxy.Deps{Decider: enforce.Local{Pipeline: a.Decide, Name: gc.MCP.Name, Audiences: []string{gc.HTTP.Resource}},
			Edge: edge(gc.HTTP.Resource), Logger: a.log.With("pep", gc.MCP.Name), Relayed: g.usage.relayed, Provenance: prov})
		for _, prefix := range g.Proxy.Prefixes() {
			mux.Handle(prefix, g.Proxy)
		}
		meta := enforce.ResourceMetadata(gc.HTTP.Resource, "Warden HTTP proxy", issuer)
		hu, _ := url.Parse(gc.HTTP.Resource)
		if p := strings.TrimSuffix(hu.Path, "/"); p != "" {
			mux.Handle("GET /.well-known/oauth-protected-resource"+p, meta)
		} else {
			root = meta
		}
	}
	if root != nil {
		mux.Handle("GET /.well-known/oauth-protected-resource", root)
	}
	// The gateway's listener answers health and metrics as the server's
	// does: a load balancer or Prometheus in front of the gateway need
	// not reach the server's address.
	for _, path := range []string{"GET /healthz", "GET /readyz", "GET /metrics"} {
		mux.Handle(path, a.Handler)
	}
	if gc.ExtAuthz.Listen != "" {
		// The mesh shares the gateway's rate limits.
		g.ExtAuthz = extauthz.New(enforce.Local{Pipeline: a.Decide, Name: gc.MCP.Name + "-ext-authz", Audiences: []string{gc.ExtAuthz.Resource}}, edge(gc.ExtAuthz.Resource), a.log)
	}
	g.handler = g.conns.CloseUnclaimed(enforce.Deadlines(gc.Limits, mux))
	a.publishGateway(g)
	return g, nil
}

// RunGateway serves g on its listen address, and the Envoy external
// authorization server when configured, until ctx ends. ready, when not
// nil, receives the gateway's bound address.
func (a *App) RunGateway(ctx context.Context, g *Gateway, ready chan<- string) error {
	gc := g.cfg
	if g.ExtAuthz != nil {
		if !config.IsLoopback(gc.ExtAuthz.Listen) && !gc.Insecure {
			return fmt.Errorf("ext_authz: refusing plain gRPC on %s, which is not a loopback address: set insecure: true if the mesh's own mTLS carries it", gc.ExtAuthz.Listen)
		}
		stop, err := serveExtAuthz(gc.ExtAuthz.Listen, g.ExtAuthz, a.log)
		if err != nil {
			return err
		}
		defer stop()
	}
	if err := a.serveMetrics(ctx); err != nil {
		return err
	}
	if g.MCP != nil {
		go a.endContainedSessions(ctx, g.MCP)
	}
	if g.usage != nil {
		go g.usage.run(ctx)
	}
	return serveGateway(ctx, g, a.log, ready)
}

// endContainedSessions ends the MCP sessions of every agent that is
// quarantined or disabled, by a person or by the automatic response, on
// this replica or another, as the change reaches the store's feed.
func (a *App) endContainedSessions(ctx context.Context, gw *mcpgw.Gateway) {
	end := func(id string) {
		rec, err := a.Registry.Agent(ctx, id)
		if err != nil || rec.Status.MayHoldTokens() {
			return
		}
		if n := gw.EndAgent(rec.ID); n > 0 {
			a.log.Info("gateway: ended the sessions of an agent that may no longer act", "agent", rec.ID, "status", rec.Status, "sessions", n)
		}
	}
	for c := range a.Store.Subscribe(ctx) {
		switch c.Kind {
		case store.ChangeAgent:
			end(c.Key)
		case store.ChangeResync: // changes were missed: look at every agent with a session
			for _, id := range gw.Agents() {
				end(id)
			}
		}
	}
}

// serveExtAuthz serves Envoy's Authorization service on addr (plain gRPC:
// Envoy calls it as a sidecar or over the mesh's own mTLS).
func serveExtAuthz(addr string, s *extauthz.Server, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ext_authz: %w", err)
	}
	// A panic in a handler must deny one request, not end the process
	// (gRPC, unlike net/http, does not recover them).
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if p := recover(); p != nil {
				log.Error("ext_authz: a check panicked; denied", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				resp, err = nil, status.Error(codes.Internal, "internal error")
			}
		}()
		return h(ctx, req)
	}))
	authv3.RegisterAuthorizationServer(srv, s)
	go srv.Serve(ln)
	log.Info("Envoy ext_authz serving", "addr", ln.Addr().String())
	return srv.GracefulStop, nil
}

func serveGateway(ctx context.Context, g *Gateway, log *slog.Logger, ready chan<- string) error {
	gc := g.cfg
	if !config.IsLoopback(gc.Listen) && gc.TLSCert == "" && !gc.Insecure {
		return fmt.Errorf("gateway: refusing plain HTTP on %s, which is not a loopback address: set tls_cert and tls_key, or insecure: true if a TLS proxy fronts it", gc.Listen)
	}
	// Bodies and answers have deadlines of their own (enforce.Deadlines),
	// event streams a longer one: the server's are for headers and idle
	// connections only.
	srv := &http.Server{
		Handler:           g.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ConnContext:       g.conns.ConnContext,
		ConnState:         g.conns.ConnState,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", gc.Listen)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	ln = netutil.LimitListener(ln, gc.Limits.MaxConnections)
	if gc.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(gc.TLSCert, gc.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("gateway TLS: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}})
	}
	go g.Connect(ctx)
	log.Info("gateway serving", "addr", ln.Addr().String(), "mcp", gc.MCP.PublicURL, "upstreams", len(gc.MCP.Servers), "http_routes", len(gc.HTTP.Routes))
	if ready != nil {
		ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		g.Close()
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close() // what is still open (event streams) is cut
	}
	g.Close()
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
