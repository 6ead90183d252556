package enforce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/wire"
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
	// Limits, when not nil, bounds each agent's requests; Conns, when not
	// nil, the connections they arrive on.
	Limits *Limiter
	Conns  *Conns
	Log    *slog.Logger

	unavailable sampled // refusals for lack of state: an outage is every request
}

// Caller is the agent behind one request, as the edge authenticated it.
type Caller struct {
	Token string
	// Agent is the agent holding the token's key: for a delegated token,
	// its current actor. Rate limits, connections and MCP sessions are
	// its; decisions are on the token.
	Agent string
	// Principal is whom the token acts as: its subject, its chain of
	// delegation actors and its task. What is kept for a caller beyond one
	// request (an upstream's session) is kept per principal, so that a
	// delegate does not carry what it did for one delegator, or one task,
	// into another.
	Principal string
	Roles     []string
	Expiry    time.Time
	// IP is the peer's address.
	IP string
}

// Refusal is why a request was not authenticated, as HTTP says it: a
// status (401, 429 or 503), and for 401 the WWW-Authenticate challenge.
type Refusal struct {
	Status    int
	Challenge string
	Message   string
}

// Authenticate authenticates r, whose DPoP proof must sign the method and
// htu (the URL the agent used, without query). On failure it has answered
// and returns false.
func (e *Edge) Authenticate(w http.ResponseWriter, r *http.Request, htu string) (*Caller, bool) {
	creds, err := wire.ReadCredentials(r)
	var c *Caller
	var no *Refusal
	if err != nil {
		no = e.refuse("Bearer", "", err)
	} else {
		c, no = e.Check(r.Context(), creds, r.Method, htu, wire.SourceIP(r))
	}
	if no != nil {
		if no.Challenge != "" {
			w.Header().Set("WWW-Authenticate", no.Challenge)
		}
		if no.Status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		http.Error(w, no.Message, no.Status)
		return nil, false
	}
	if e.Conns != nil && !e.Conns.Claim(r.Context(), c.Agent) {
		w.Header().Set("Connection", "close")
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many connections for this agent", http.StatusTooManyRequests)
		return nil, false
	}
	return c, true
}

// Check authenticates credentials read from a request (method, htu) that
// came from ip, for enforcement points that are not HTTP handlers.
func (e *Edge) Check(ctx context.Context, creds wire.Credentials, method, htu, ip string) (*Caller, *Refusal) {
	tok, err := e.Verifier.VerifyRequest(ctx, identity.Request{Token: creds.Token, DPoP: creds.Proof, Method: method, URL: htu})
	var inactive *identity.AgentInactiveError
	switch {
	case errors.As(err, &inactive):
		// Its token and proof are good: the decision denies and records it.
	case errors.Is(err, identity.ErrProofRateExceeded):
		// The key's DPoP proof rate (identity.dpop.proofs_per_key); the
		// verifier counts these and logs them sampled.
		return nil, &Refusal{Status: http.StatusTooManyRequests, Message: "too many DPoP proofs signed by this key: retry shortly"}
	case errors.Is(err, identity.ErrReplayCacheIsFull):
		// Counted and logged sampled by the verifier, not a line each.
		return nil, &Refusal{Status: http.StatusServiceUnavailable, Message: "authentication temporarily unavailable"}
	case errors.Is(err, identity.ErrStateUnavailable) || errors.Is(err, identity.ErrUnavailable):
		e.unavailable.warn(e.Log, err)
		return nil, &Refusal{Status: http.StatusServiceUnavailable, Message: "authentication temporarily unavailable"}
	case errors.Is(err, identity.ErrDPoP) || errors.Is(err, identity.ErrDPoPKeyMismatch) || errors.Is(err, identity.ErrReplay):
		return nil, e.refuse("DPoP", "invalid_dpop_proof", err)
	case errors.Is(err, identity.ErrDPoPRequired):
		return nil, e.refuse("DPoP", "invalid_token", err)
	case err != nil:
		return nil, e.refuse(creds.Scheme, "invalid_token", err)
	}
	if !tok.Audience.Contains(e.Resource) {
		return nil, e.refuse(creds.Scheme, "invalid_token", fmt.Errorf("the token was not issued for this resource; ask the token endpoint with resource=%s", e.Resource))
	}
	// Limits, connections and MCP sessions are the key holder's: a
	// delegate uses its own, not its delegator's.
	holder := tok.Presenter.String()
	if e.Limits != nil && !e.Limits.Allow(holder) {
		return nil, &Refusal{Status: http.StatusTooManyRequests, Message: "rate limit exceeded"}
	}
	return &Caller{Token: creds.Token, Agent: holder, Principal: principal(tok), Roles: tok.Roles, Expiry: tok.Expiry, IP: ip}, nil
}

// principal names whom tok acts as: "subject < actor < ... #task". Agent
// ids and tasks hold no spaces, '<' or '#'.
func principal(tok *identity.Token) string {
	var b strings.Builder
	b.WriteString(tok.Agent.String())
	for _, a := range tok.Chain {
		b.WriteString(" < ")
		b.WriteString(a.String())
	}
	if tok.Task != "" {
		b.WriteString(" #")
		b.WriteString(tok.Task)
	}
	return b.String()
}

// refuse is a 401 with an RFC 6750 / RFC 9449 challenge.
func (e *Edge) refuse(scheme, code string, err error) *Refusal {
	params := []string{fmt.Sprintf("resource_metadata=%q", e.MetadataURL)}
	if code != "" {
		desc := strings.NewReplacer(`"`, "'", "\\", "/").Replace(err.Error())
		params = append(params, fmt.Sprintf("error=%q", code), fmt.Sprintf("error_description=%q", desc))
	}
	if scheme == "DPoP" {
		params = append(params, `algs="EdDSA ES256"`)
	}
	return &Refusal{Status: http.StatusUnauthorized, Challenge: scheme + " " + strings.Join(params, ", "), Message: "unauthorized: " + err.Error()}
}

// MetadataURL is where the protected resource metadata of resource is
// published (RFC 9728 section 3: the well-known path, then the resource's
// path).
func MetadataURL(scheme, host, path string) string {
	return scheme + "://" + host + "/.well-known/oauth-protected-resource" + strings.TrimSuffix(path, "/")
}

// ResourceMetadata serves the RFC 9728 protected resource metadata of an
// enforcement point's resource, naming the authorization server issuer.
func ResourceMetadata(resource, name, issuer string) http.Handler {
	body, _ := json.Marshal(map[string]any{
		"resource":                          resource,
		"resource_name":                     name,
		"authorization_servers":             []string{issuer},
		"bearer_methods_supported":          []string{"header"},
		"dpop_bound_access_tokens_required": false,
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Write(body)
	})
}

// sampled logs a condition at most once every sampleEvery, with how many
// times it happened since: an outage refuses every request, and must not
// write a line for each.
type sampled struct {
	mu      sync.Mutex
	last    time.Time
	skipped int
}

const sampleEvery = 10 * time.Second

func (s *sampled) warn(log *slog.Logger, err error) {
	if log == nil {
		return
	}
	s.mu.Lock()
	now := time.Now()
	if now.Sub(s.last) < sampleEvery {
		s.skipped++
		s.mu.Unlock()
		return
	}
	skipped := s.skipped
	s.last, s.skipped = now, 0
	s.mu.Unlock()
	log.Warn("cannot authenticate: state unavailable", "err", err, "refused_since_last_line", skipped)
}
