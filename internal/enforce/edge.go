package enforce

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/warden-run/warden/internal/identity"
)

// Edge authenticates the agents' HTTP requests at an enforcement point: the
// access token (signature, issuer, expiry, revocation, key binding) must
// have been issued for this enforcement point, and its DPoP proof, when
// given or when the agent's trust domain requires one, must sign this very
// request. An agent that is quarantined or disabled passes, so that the
// decision on its action denies it and records why.
type Edge struct {
	Verifier *identity.Verifier
	// Resource is the enforcement point's resource identifier (RFC 8707):
	// the aud its tokens must have.
	Resource string
	// MetadataURL is its protected resource metadata (RFC 9728), named in
	// every challenge.
	MetadataURL string
	// Limits, when not nil, bounds each agent's requests.
	Limits *Limiter
	Log    *slog.Logger
}

// Caller is the agent behind one request, as the edge authenticated it.
type Caller struct {
	Token  string
	Agent  string
	Roles  []string
	Expiry time.Time
	// IP is the peer's address; Task the Warden-Task header, which groups
	// an agent's requests into one session for taints.
	IP   string
	Task string
}

// Authenticate authenticates r, whose DPoP proof must sign the method and
// htu (the URL the agent used, without query). On failure it has answered
// (401 with a challenge, 429, or 503) and returns false.
func (e *Edge) Authenticate(w http.ResponseWriter, r *http.Request, htu string) (*Caller, bool) {
	creds, err := ReadCredentials(r)
	if err != nil {
		e.challenge(w, "Bearer", "", err)
		return nil, false
	}
	tok, err := e.Verifier.VerifyRequest(r.Context(), identity.Request{Token: creds.Token, DPoP: creds.Proof, Method: r.Method, URL: htu})
	var inactive *identity.AgentInactiveError
	switch {
	case errors.As(err, &inactive):
		if tok, err = e.Verifier.Inspect(creds.Token); err != nil {
			e.challenge(w, creds.Scheme, "invalid_token", err)
			return nil, false
		}
	case errors.Is(err, identity.ErrUnavailable):
		if e.Log != nil {
			e.Log.Warn("cannot authenticate: state unavailable", "err", err)
		}
		http.Error(w, "authentication temporarily unavailable", http.StatusServiceUnavailable)
		return nil, false
	case errors.Is(err, identity.ErrDPoP) || errors.Is(err, identity.ErrDPoPKeyMismatch) || errors.Is(err, identity.ErrReplay):
		e.challenge(w, "DPoP", "invalid_dpop_proof", err)
		return nil, false
	case errors.Is(err, identity.ErrDPoPRequired):
		e.challenge(w, "DPoP", "invalid_token", err)
		return nil, false
	case err != nil:
		e.challenge(w, creds.Scheme, "invalid_token", err)
		return nil, false
	}
	if !tok.Audience.Contains(e.Resource) {
		e.challenge(w, creds.Scheme, "invalid_token", fmt.Errorf("the token was not issued for this resource; ask the token endpoint with resource=%s", e.Resource))
		return nil, false
	}
	if e.Limits != nil && !e.Limits.Allow(tok.Subject) {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "rate limit exceeded", http.StatusTooManyRequests)
		return nil, false
	}
	return &Caller{Token: creds.Token, Agent: tok.Subject, Roles: tok.Roles, Expiry: tok.Expiry,
		IP: SourceIP(r), Task: r.Header.Get("Warden-Task")}, true
}

// challenge answers 401 with an RFC 6750 / RFC 9449 challenge.
func (e *Edge) challenge(w http.ResponseWriter, scheme, code string, err error) {
	params := []string{fmt.Sprintf("resource_metadata=%q", e.MetadataURL)}
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

// MetadataURL is where the protected resource metadata of resource is
// published (RFC 9728 section 3: the well-known path, then the resource's
// path).
func MetadataURL(scheme, host, path string) string {
	return scheme + "://" + host + "/.well-known/oauth-protected-resource" + strings.TrimSuffix(path, "/")
}
