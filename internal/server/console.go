package server

import (
	"context"
	"net/http"
	"strings"

	"github.com/warden-run/warden/internal/console"
	"github.com/warden-run/warden/internal/humans"
)

// routeConsole serves the web console at /ui/, signing people in with
// the credentials the admin API takes.
func (s *Server) routeConsole(m *http.ServeMux) {
	c, err := console.New(console.Config{SecureCookies: strings.HasPrefix(s.cfg.Issuer, "https://")}, console.Deps{
		Authenticate: func(ctx context.Context, token string) (humans.Principal, bool) {
			r, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/ui/", nil)
			r.Header.Set("Authorization", "Bearer "+token)
			return s.authenticate(r)
		},
		Allows:   func(roles []string, p humans.Permission) bool { return s.roles().Allows(roles, p) },
		Agents:   s.d.Registry.Agents,
		Audit:    s.d.Audit,
		Policies: s.d.Policies,
		Logger:   s.log,
	})
	if err != nil {
		s.log.Error("console: not served", "err", err) // its templates are embedded: a bug, not a setting
		return
	}
	m.Handle("/ui/", c)
	m.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
}
