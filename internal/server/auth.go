package server

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/warden-run/warden/internal/humans"
)

// Access changes who may administer with the bootstrap token.
type Access interface {
	// RotateBootstrap replaces the bootstrap token and returns the new one.
	RotateBootstrap(ctx context.Context, actor string) (string, error)
	// DisableBootstrap refuses the bootstrap token from now on.
	DisableBootstrap(ctx context.Context, actor string) error
	// BootstrapEnabled reports whether the bootstrap token is accepted.
	BootstrapEnabled(ctx context.Context) (bool, error)
}

// LoginRequest hands Warden an ID token from the OpenID provider; Nonce is
// the one the sign-in asked the provider for, when it asked for one.
type LoginRequest struct {
	IDToken string `json:"id_token"`
	Nonce   string `json:"nonce,omitempty"`
}

// LoginResponse is a new session: the token (shown once) and who it is.
type LoginResponse struct {
	SessionToken string           `json:"session_token"`
	Principal    humans.Principal `json:"principal"`
}

// AuthConfig is what a client needs to sign a person in at the provider.
type AuthConfig struct {
	Issuer   string   `json:"issuer"`
	ClientID string   `json:"client_id"`
	Scopes   []string `json:"scopes"`
}

// authConfig answers GET /v1/auth/config.
func (s *Server) authConfig(w http.ResponseWriter, r *http.Request) {
	if s.d.Humans == nil {
		writeError(w, http.StatusNotFound, "not_configured", "sign-in is not configured on this server (humans.issuer in warden.yaml)")
		return
	}
	c := s.d.Humans.Config()
	writeJSON(w, http.StatusOK, AuthConfig{Issuer: c.Issuer, ClientID: c.ClientID, Scopes: c.Scopes})
}

// login answers POST /v1/auth/login: an ID token for a session.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if s.d.Humans == nil {
		writeError(w, http.StatusNotFound, "not_configured", "sign-in is not configured on this server (humans.issuer in warden.yaml)")
		return
	}
	var body LoginRequest
	if err := decodeJSON(r, &body); err != nil || body.IDToken == "" {
		msg := "id_token is required"
		if err != nil {
			msg = err.Error()
		}
		writeError(w, http.StatusBadRequest, "invalid_request", msg)
		return
	}
	p, token, err := s.d.Humans.Login(r.Context(), body.IDToken, body.Nonce)
	switch {
	case errors.Is(err, humans.ErrIDToken):
		s.log.Warn("sign-in refused", "remote", r.RemoteAddr, "err", err)
		writeError(w, http.StatusUnauthorized, "invalid_id_token", err.Error())
		return
	case errors.Is(err, humans.ErrNoRole):
		s.log.Warn("sign-in refused", "remote", r.RemoteAddr, "err", err)
		writeError(w, http.StatusForbidden, "no_role", err.Error())
		return
	case err != nil:
		s.log.Error("sign-in failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "sign-in cannot be completed now: "+err.Error())
		return
	}
	s.syncRelay(r)
	writeJSON(w, http.StatusOK, LoginResponse{SessionToken: token, Principal: p})
}

// logout answers POST /v1/auth/logout: the session presented ends.
func (s *Server) logout(w http.ResponseWriter, r *http.Request, actor string) {
	p := principalOf(r)
	_, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !p.Human {
		writeError(w, http.StatusBadRequest, "invalid_request", "the bootstrap token is not a session: rotate or disable it instead")
		return
	}
	if err := s.d.Humans.Logout(r.Context(), tok, p); err != nil {
		s.adminError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "signed out"})
}

// whoami answers GET /v1/auth/whoami.
func (s *Server) whoami(w http.ResponseWriter, r *http.Request, actor string) {
	writeJSON(w, http.StatusOK, principalOf(r))
}

// access answers GET /v1/access: the bootstrap token's state, the people
// who signed in, and the roles.
func (s *Server) access(w http.ResponseWriter, r *http.Request, actor string) {
	out := map[string]any{"roles": s.roles()}
	if s.d.Access != nil {
		enabled, err := s.d.Access.BootstrapEnabled(r.Context())
		if err != nil {
			s.adminError(w, err)
			return
		}
		out["bootstrap_enabled"] = enabled
	}
	if s.d.Humans != nil {
		hs, err := s.d.Humans.People(r.Context())
		if err != nil {
			s.adminError(w, err)
			return
		}
		out["humans"] = hs
		c := s.d.Humans.Config()
		out["oidc"] = AuthConfig{Issuer: c.Issuer, ClientID: c.ClientID, Scopes: c.Scopes}
	}
	writeJSON(w, http.StatusOK, out)
}

// rotateBootstrap answers POST /v1/access/bootstrap/rotate: a new token,
// shown once; the old one stops working at once, at every replica.
func (s *Server) rotateBootstrap(w http.ResponseWriter, r *http.Request, actor string) {
	tok, err := s.d.Access.RotateBootstrap(r.Context(), actor)
	if err != nil {
		s.adminError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": tok})
}

// disableBootstrap answers POST /v1/access/bootstrap/disable. Only once a
// person with the admin role has signed in: otherwise nobody could
// administer.
func (s *Server) disableBootstrap(w http.ResponseWriter, r *http.Request, actor string) {
	if s.d.Humans == nil {
		writeError(w, http.StatusConflict, "conflict", "no sign-in is configured: the bootstrap token is the only admin credential")
		return
	}
	hs, err := s.d.Humans.People(r.Context())
	if err != nil {
		s.adminError(w, err)
		return
	}
	admin := false
	for _, h := range hs {
		if s.roles().Allows(h.Roles, humans.AdministerAccess) {
			admin = true
		}
	}
	if !admin {
		writeError(w, http.StatusConflict, "conflict", "no person with the admin role has signed in yet: sign one in first ('warden login')")
		return
	}
	if err := s.d.Access.DisableBootstrap(r.Context(), actor); err != nil {
		s.adminError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "the bootstrap token is disabled"})
}

func (s *Server) syncRelay(r *http.Request) {
	if s.d.Relay != nil {
		if err := s.d.Relay.Sync(context.WithoutCancel(r.Context())); err != nil {
			s.log.Error("audit: relaying events failed; the relay will retry", "err", err)
		}
	}
}
