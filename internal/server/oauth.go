package server

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/warden-run/warden/internal/identity"
)

// token is the OAuth 2.0 token endpoint (RFC 6749 section 3.2). The issuer
// records every token it issues in the audit log before answering, and
// every refusal (one by one, or summarised under a flood).
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	req, err := s.tokenRequest(r)
	if err != nil {
		err = s.d.Issuer.RecordRefusal(r.Context(), tokenAction(req.GrantType), req, err)
		s.tokenRefused(req.GrantType, s.oauthError(w, err))
		return
	}
	it, err := s.d.Issuer.Issue(r.Context(), req)
	if err != nil {
		s.tokenRefused(req.GrantType, s.oauthError(w, err))
		return
	}
	if s.d.Metrics != nil {
		s.d.Metrics.TokenIssued(req.GrantType)
	}
	s.log.Debug("token issued", "grant", grantName(req.GrantType), "sub", it.Subject, "jti", it.JTI,
		"actors", it.Chain, "token_type", it.TokenType)
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, it)
}

func (s *Server) tokenRefused(grant, code string) {
	if s.d.Metrics != nil {
		s.d.Metrics.TokenRefused(grant, code)
	}
}

func tokenAction(grant string) string {
	switch grant {
	case identity.GrantClientCredentials:
		return identity.ActionTokenIssue
	case identity.GrantTokenExchange:
		return identity.ActionTokenExchange
	}
	return identity.ActionTokenRequest
}

// revoke is the RFC 7009 revocation endpoint: an agent revokes one of its own
// tokens. As the RFC asks, a token that is already invalid is answered 200.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	req, err := s.tokenRequest(r)
	if err == nil && req.GrantType != "" {
		err = formError("grant_type does not belong in a revocation request")
	}
	raw := r.PostForm.Get("token")
	if err == nil && raw == "" {
		err = formError("token is required")
	}
	if err != nil {
		s.oauthError(w, s.d.Issuer.RecordRefusal(r.Context(), identity.ActionTokenRevoke, req, err))
		return
	}
	client, err := s.d.Issuer.AuthenticateClient(r.Context(), req)
	if err != nil {
		s.oauthError(w, err)
		return
	}
	// Any token with a good signature is revoked, even one refused for
	// another reason now (an inactive agent may be enabled again).
	tok, err := s.d.Verifier.Inspect(raw)
	if err != nil {
		s.log.Info("revocation of an invalid token ignored", "client", client.String(), "reason", err)
		w.WriteHeader(http.StatusOK)
		return
	}
	if tok.Agent != client && tok.Presenter != client {
		s.log.Warn("revocation refused: not the client's token", "client", client.String(), "jti", tok.ID)
		w.WriteHeader(http.StatusOK)
		return
	}
	if err := s.d.Registry.RevokeToken(r.Context(), "agent:"+client.String(), tok.ID, tok.Subject, tok.Expiry, "revoked by its holder"); err != nil {
		s.log.Error("revocation failed", "err", err)
		w.Header().Set("Pragma", "no-cache")
		writeJSON(w, http.StatusServiceUnavailable, identity.OAuthError{Code: "temporarily_unavailable", Description: "try again shortly"})
		return
	}
	w.WriteHeader(http.StatusOK)
}

// formError is a token request that is malformed before it reaches the
// issuer; its message names the problem and holds no secret.
type formError string

func (e formError) Error() string { return string(e) }

// Unwrap makes a malformed form an invalid request for the record.
func (e formError) Unwrap() error { return identity.ErrInvalidRequest }

// tokenRequest reads the form of a token or revocation request strictly.
func (s *Server) tokenRequest(r *http.Request) (identity.TokenRequest, error) {
	req := identity.TokenRequest{Source: remoteIP(r)}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		return req, formError("Content-Type must be application/x-www-form-urlencoded")
	}
	if auth := r.Header.Get("Authorization"); auth != "" {
		// Only private_key_jwt is supported: a client secret in a header is refused.
		return req, identity.ErrClientAuthMethod
	}
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return req, formError("body too large")
		}
		return req, formError("the form does not parse")
	}
	for k, v := range r.PostForm {
		if len(v) > 1 {
			return req, formError("parameter " + k + " is repeated")
		}
	}
	if len(r.Header.Values("DPoP")) > 1 {
		return req, formError("more than one DPoP header")
	}
	f := r.PostForm.Get
	req = identity.TokenRequest{
		GrantType:           f("grant_type"),
		ClientID:            f("client_id"),
		ClientAssertionType: f("client_assertion_type"),
		ClientAssertion:     f("client_assertion"),
		Scope:               f("scope"),
		Resource:            f("resource"),
		SubjectToken:        f("subject_token"),
		SubjectTokenType:    f("subject_token_type"),
		ActorToken:          f("actor_token"),
		ActorTokenType:      f("actor_token_type"),
		Audience:            f("audience"),
		RequestedTokenType:  f("requested_token_type"),
		Task:                f("task"),
		DPoP:                r.Header.Get("DPoP"),
		Source:              req.Source,
	}
	if v := f("expires_in"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return req, formError("expires_in must be a whole number of seconds")
		}
		req.ExpiresIn = n
	}
	return req, nil
}

// remoteIP is the address of the client's end of the connection.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	return host
}

// oauthError answers with an RFC 6749 error and returns its code. The
// issuer has recorded and logged the refusal (sampled under a flood); the
// client learns only the fixed description of its kind.
func (s *Server) oauthError(w http.ResponseWriter, err error) string {
	var oe identity.OAuthError
	var fe formError
	switch {
	case errors.Is(err, identity.ErrClientAuthMethod):
		oe = identity.OAuthError{Status: http.StatusUnauthorized, Code: "invalid_client", Description: "client authentication failed"}
	case errors.As(err, &fe):
		oe = identity.OAuthError{Status: http.StatusBadRequest, Code: "invalid_request", Description: string(fe)}
	default:
		oe = identity.OAuthErrorFor(err)
	}
	if oe.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_client"`)
	}
	if oe.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(oe.RetryAfter))
	}
	w.Header().Set("Pragma", "no-cache")
	// The id of the refusal's record, when it has one of its own: the
	// client can hand it to an operator, who finds the reason by it in
	// the audit log; it tells the client nothing.
	writeJSON(w, oe.Status, struct {
		identity.OAuthError
		RefusalID string `json:"refusal_id,omitempty"`
	}{oe, identity.RefusalID(err)})
	return oe.Code
}

func grantName(g string) string {
	switch g {
	case identity.GrantTokenExchange:
		return "token-exchange"
	case "":
		return "none"
	}
	if len(g) > 40 {
		return g[:40]
	}
	return g
}

func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	// Short: verifiers must see a rotated key soon. They should refetch on an unknown kid anyway.
	w.Header().Set("Cache-Control", "public, max-age=60")
	w.Write(s.d.Keys.JWKS())
}

// metadata is the RFC 8414 authorization server metadata.
func (s *Server) metadata(w http.ResponseWriter, r *http.Request) {
	iss := s.cfg.Issuer
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                iss,
		"token_endpoint":                        iss + "/oauth/token",
		"jwks_uri":                              iss + "/.well-known/jwks.json",
		"revocation_endpoint":                   iss + "/oauth/revoke",
		"grant_types_supported":                 []string{identity.GrantClientCredentials, identity.GrantTokenExchange},
		"response_types_supported":              []string{},
		"token_endpoint_auth_methods_supported": []string{"private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported":      []string{"EdDSA"},
		"revocation_endpoint_auth_methods_supported":            []string{"private_key_jwt"},
		"revocation_endpoint_auth_signing_alg_values_supported": []string{"EdDSA"},
		"dpop_signing_alg_values_supported":                     []string{"EdDSA"},
	})
}
