package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/warden-run/warden/internal/console"
	"github.com/warden-run/warden/internal/humans"
	"github.com/warden-run/warden/internal/monitor"
)

// routeConsole serves the web console at /ui/, signing people in with
// the credentials the admin API takes. What the console reads beyond its
// overview, and every change it makes, goes through this API in process
// (Deps.API), with the signed-in person's credential: one set of
// permission checks, validation and audit events for both.
func (s *Server) routeConsole(m *http.ServeMux) {
	var risk func(string) (monitor.Risk, bool)
	if s.d.Monitor != nil {
		risk = func(agent string) (monitor.Risk, bool) { return s.d.Monitor.Risk(agent), true }
	}
	var signIn *console.OIDC
	if s.d.Humans != nil {
		hc := s.d.Humans.Config()
		signIn = &console.OIDC{Issuer: hc.Issuer, ClientID: hc.ClientID, Scopes: hc.Scopes, RedirectURL: s.cfg.Issuer + "/ui/oidc/callback",
			NoRole: humans.ErrNoRole,
			Login: func(ctx context.Context, rawIDToken, nonce string) (string, error) {
				_, session, err := s.d.Humans.Login(ctx, rawIDToken, nonce)
				if err == nil && s.d.Relay != nil {
					// The sign-in's event, in the audit log before the person
					// sees the console, as for the API's sign-in.
					if err := s.d.Relay.Sync(context.WithoutCancel(ctx)); err != nil {
						s.log.Error("audit: relaying events failed; the relay will retry", "err", err)
					}
				}
				return session, err
			}}
	}
	origin := s.cfg.Issuer
	if u, err := url.Parse(s.cfg.Issuer); err == nil {
		origin = u.Scheme + "://" + u.Host
	}
	c, err := console.New(console.Config{SecureCookies: strings.HasPrefix(s.cfg.Issuer, "https://"), Origin: origin}, console.Deps{
		Authenticate: func(ctx context.Context, token string) (humans.Principal, bool) {
			r, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/ui/", nil)
			r.Header.Set("Authorization", "Bearer "+token)
			return s.authenticate(r)
		},
		Allows: func(roles []string, p humans.Permission) bool { return s.roles().Allows(roles, p) },
		API:    s.callAPI,
		Risk:   risk,
		TokenRevoked: func(jti string) bool {
			return s.d.View != nil && s.d.View.TokenRevoked(jti)
		},
		Agents:   s.d.Registry.Agents,
		Audit:    s.d.Audit,
		Policies: s.d.Policies,
		Logger:   s.log,
		OIDC:     signIn,
	})
	if err != nil {
		s.log.Error("console: not served", "err", err) // its templates are embedded: a bug, not a setting
		return
	}
	m.Handle("/ui/", c)
	m.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
}

// callAPI serves one admin API request in process, as from the console's
// request from, with token as its bearer credential, answering into w.
// Only /v1/ paths.
func (s *Server) callAPI(from *http.Request, token, method, path string, body []byte, w http.ResponseWriter) {
	if !strings.HasPrefix(path, "/v1/") {
		writeError(w, http.StatusNotFound, "not_found", "the console calls /v1/ only")
		return
	}
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	r, err := http.NewRequestWithContext(from.Context(), method, path, rd)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "the console made a request it cannot send")
		return
	}
	r.RemoteAddr = from.RemoteAddr
	r.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	s.ServeHTTP(w, r)
}
