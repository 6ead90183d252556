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
	"slices"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/enforce"
	"github.com/warden-run/warden/internal/enforce/extauthz"
	"github.com/warden-run/warden/internal/enforce/mcpgw"
	"google.golang.org/grpc"
)

// GatewayPEP is the enforcement point name of a gateway that runs inside
// the server, unless its configuration names another.
const GatewayPEP = "mcp-gateway"

// LoadGateway reads the gateway file cfg names, if any, and lets tokens be
// issued for the gateway: its public URL (and its HTTP proxy's resource)
// become identity resources. Call it before New.
func LoadGateway(cfg *config.Config) (*mcpgw.Config, error) {
	if cfg.Gateway == "" {
		return nil, nil
	}
	g, err := mcpgw.LoadConfig(cfg.Gateway)
	if err != nil {
		return nil, err
	}
	add := func(resource string) {
		if !slices.Contains(cfg.Identity.Resources, resource) {
			cfg.Identity.Resources = append(cfg.Identity.Resources, resource)
		}
	}
	add(g.PublicURL)
	if len(g.HTTP.Routes) > 0 {
		add(g.HTTP.Resource)
	}
	if g.ExtAuthz.Listen != "" {
		add(g.ExtAuthz.Resource)
	}
	return &g, nil
}

// NewGateway makes an MCP gateway that decides in this process.
func (a *App) NewGateway(gc mcpgw.Config) (*mcpgw.Gateway, error) {
	return mcpgw.New(gc, mcpgw.Deps{
		Decider:  enforce.Local{Pipeline: a.Decide, Name: gc.Name, Audiences: gatewayAudiences(gc)},
		Verifier: a.Verifier,
		Issuer:   a.cfg.Identity.Issuer,
		Logger:   a.log,
	})
}

// gatewayAudiences are the resources a gateway serves: the MCP gateway's
// URL, and its HTTP proxy's resource when it has routes. Its decisions
// check the agent's token against them.
func gatewayAudiences(gc mcpgw.Config) []string {
	aud := []string{gc.PublicURL}
	if len(gc.HTTP.Routes) > 0 {
		aud = append(aud, gc.HTTP.Resource)
	}
	return aud
}

// RunGateway serves g on its listen address, and the Envoy external
// authorization server when configured, until ctx ends. ready, when not
// nil, receives the gateway's bound address.
func (a *App) RunGateway(ctx context.Context, g *mcpgw.Gateway, gc mcpgw.Config, ready chan<- string) error {
	if gc.ExtAuthz.Listen != "" {
		if !config.IsLoopback(gc.ExtAuthz.Listen) && !gc.Insecure {
			return fmt.Errorf("ext_authz: refusing plain gRPC on %s, which is not a loopback address: set insecure: true if the mesh's own mTLS carries it", gc.ExtAuthz.Listen)
		}
		// The mesh shares the gateway's rate limits and session taints: a
		// task tainted through MCP is tainted for its HTTP calls too.
		u, _ := url.Parse(gc.ExtAuthz.Resource)
		edge := &enforce.Edge{Verifier: a.Verifier, Resource: gc.ExtAuthz.Resource, MetadataURL: enforce.MetadataURL(u.Scheme, u.Host, u.Path),
			Limits: g.Limits(), Log: a.log}
		stop, err := serveExtAuthz(gc.ExtAuthz.Listen, extauthz.New(enforce.Local{Pipeline: a.Decide, Name: gc.Name + "-ext-authz", Audiences: []string{gc.ExtAuthz.Resource}}, edge,
			g.Sessions(), a.log), a.log)
		if err != nil {
			return err
		}
		defer stop()
	}
	return serveGateway(ctx, g, gc, a.log, ready)
}

// serveExtAuthz serves Envoy's Authorization service on addr (plain gRPC:
// Envoy calls it as a sidecar or over the mesh's own mTLS).
func serveExtAuthz(addr string, s *extauthz.Server, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ext_authz: %w", err)
	}
	srv := grpc.NewServer()
	authv3.RegisterAuthorizationServer(srv, s)
	go srv.Serve(ln)
	log.Info("Envoy ext_authz serving", "addr", ln.Addr().String())
	return srv.GracefulStop, nil
}

func serveGateway(ctx context.Context, g *mcpgw.Gateway, gc mcpgw.Config, log *slog.Logger, ready chan<- string) error {
	if !config.IsLoopback(gc.Listen) && gc.TLSCert == "" && !gc.Insecure {
		return fmt.Errorf("gateway: refusing plain HTTP on %s, which is not a loopback address: set tls_cert and tls_key, or insecure: true if a TLS proxy fronts it", gc.Listen)
	}
	srv := &http.Server{
		Handler:           g.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", gc.Listen)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	if gc.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(gc.TLSCert, gc.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("gateway TLS: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}})
	}
	go g.Connect(ctx)
	log.Info("MCP gateway serving", "url", gc.PublicURL, "upstreams", len(gc.Servers))
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
	srv.Shutdown(sctx) // streams of MCP sessions are cut when it gives up
	g.Close()
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
