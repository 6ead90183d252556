package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/warden-run/warden/internal/wire"
)

// Enforcer makes a Go HTTP service its own enforcement point: its
// Middleware asks a Warden server to decide every request (POST
// /v1/decide, as a registered enforcement point) before the handler runs.
// The agent's token and DPoP proof go to Warden, which verifies them; the
// answer is followed, and anything that is not an allow (an error, a slow
// or unreachable Warden) is a refusal.
type Enforcer struct {
	client   wire.Client
	resource string
	name     string
	maxBody  int64
	log      *slog.Logger
	applies  []string // the obligations the handler applies
}

// EnforcerOption configures an Enforcer.
type EnforcerOption func(*Enforcer)

// WithDecisionTimeout bounds how long a request waits for its decision;
// after it the request is refused (default 2 s).
func WithDecisionTimeout(d time.Duration) EnforcerOption {
	return func(e *Enforcer) { e.client.Timeout = d }
}

// WithResourceName is where the service's requests are in policy:
// resource "<name>/<path>" of kind http.route (default the resource's host).
func WithResourceName(name string) EnforcerOption { return func(e *Enforcer) { e.name = name } }

// WithObligations names the obligations the handler applies (such as
// "redact"), finding them with DecisionFrom. An allow that comes with any
// other is refused (403): what policy made the allow depend on would not
// hold. Without it, an allow with any obligation is refused.
func WithObligations(names ...string) EnforcerOption {
	return func(e *Enforcer) { e.applies = append(e.applies, names...) }
}

// WithEnforcerLogger logs why a request got no decision (the agent is
// told only that there was none).
func WithEnforcerLogger(l *slog.Logger) EnforcerOption { return func(e *Enforcer) { e.log = l } }

// WithEnforcerHTTPClient sets the client that reaches Warden.
// Redirects are never followed, whatever c says: they would carry the
// agent's token and the enforcement point's credential elsewhere.
func WithEnforcerHTTPClient(c *http.Client) EnforcerOption {
	return func(e *Enforcer) { e.client.HTTP = c }
}

// NewEnforcer makes an enforcer that asks the Warden server at serverURL,
// authenticated by credential (from `warden pep register`), for a service
// reached at resource (such as https://orders.internal): agents' tokens
// must be issued for that resource, and their DPoP proofs sign its URLs.
func NewEnforcer(serverURL, credential, resource string, opts ...EnforcerOption) (*Enforcer, error) {
	u, err := url.Parse(resource)
	if err != nil || !u.IsAbs() || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("enforcer: resource %q is not an absolute URL without query or fragment", resource)
	}
	if credential == "" {
		return nil, errors.New("enforcer: the enforcement point's credential is required")
	}
	e := &Enforcer{client: wire.Client{Server: strings.TrimSuffix(serverURL, "/"), Credential: credential, Timeout: 2 * time.Second},
		resource: strings.TrimSuffix(resource, "/"), name: u.Host, maxBody: 1 << 20, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(e)
	}
	return e, nil
}

// Decision is Warden's answer about a request, as the handler finds it
// with DecisionFrom: its id, and the obligations that came with the allow
// (such as fields to redact).
type Decision = wire.Decision

// Outcome is what a decision tells the service to do.
type Outcome = wire.Outcome

// The outcomes of a decision.
const (
	Allow Outcome = wire.Allow
	Deny  Outcome = wire.Deny
	// PendingApproval: allowed once enough approvers agree; until then the
	// action must not run.
	PendingApproval Outcome = wire.PendingApproval
)

type decisionKey struct{}

// DecisionFrom returns the decision that let the request in.
func DecisionFrom(ctx context.Context) (Decision, bool) {
	d, ok := ctx.Value(decisionKey{}).(Decision)
	return d, ok
}

// Middleware decides every request before next sees it: action
// "http:<METHOD>", resource "<name>/<path>", its query and JSON body as
// arguments. Allowed requests reach next without the agent's credentials
// headers, with the body as policy saw it; the others get 401 (not
// authenticated), 403 (denied, or approval required, with the decision
// id), 429 (too many requests from the agent's key) or 503 (no decision).
func (e *Enforcer) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		creds, err := wire.ReadCredentials(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_request", error_description="an access token is required"`)
			refuse(w, http.StatusUnauthorized, map[string]string{"error": err.Error()})
			return
		}
		// Policy decides on the path as written: one the handler's router
		// could resolve to another ("/orders/../admin") is refused.
		if lower := strings.ToLower(r.URL.EscapedPath()); !wire.CleanPath(r.URL.Path) || strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") {
			refuse(w, http.StatusBadRequest, map[string]string{"error": "the path must not hold '.', '..' or empty segments, '\\', ';' or escaped slashes"})
			return
		}
		if r.Method == http.MethodTrace {
			refuse(w, http.StatusMethodNotAllowed, map[string]string{"error": "TRACE is not served"})
			return
		}
		for name := range r.Header {
			if wire.AliasOfAgentHeader(name) {
				refuse(w, http.StatusBadRequest, map[string]string{"error": "the header " + name + " is read as " + strings.ReplaceAll(name, "_", "-") + " by some servers: not accepted"})
				return
			}
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, e.maxBody))
		if err != nil {
			refuse(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "request body too large"})
			return
		}
		if len(r.Header.Values("Content-Type")) > 1 {
			refuse(w, http.StatusBadRequest, map[string]string{"error": "one Content-Type header, not several"})
			return
		}
		args, body, err := wire.HTTPArgs(r.URL.Query(), r.Header.Get("Content-Type"), body)
		if err != nil {
			refuse(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		// The handler reads the body policy decided on, and no trailer
		// after it.
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err == nil && wire.IsJSON(mt) {
			r.Header.Set("Content-Type", mt)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		r.Trailer = nil
		req := &wire.Request{Token: creds.Token, Audience: e.resource, Action: "http:" + r.Method,
			Resource: wire.Resource{Kind: "http.route", ID: e.name + r.URL.Path}, Args: args,
			Context: wire.RequestContext{Source: wire.Source{IP: wire.SourceIP(r)}}}
		if creds.Proof != "" {
			req.DPoP, req.HTM, req.HTU = creds.Proof, r.Method, e.resource+r.URL.EscapedPath()
		}
		d, err := e.client.Decide(r.Context(), req)
		if err != nil {
			e.log.Warn("enforcer: no decision; refused", "method", r.Method, "path", r.URL.Path, "err", err)
			refuse(w, http.StatusServiceUnavailable, map[string]string{"error": "no decision could be made"})
			return
		}
		w.Header().Set("Warden-Decision-Id", d.ID)
		switch {
		case d.Outcome == Allow && !e.canApply(d.Obligations):
			e.log.Warn("enforcer: an allow's obligations are not ones the handler applies; refused", "decision_id", d.ID, "obligations", slices.Sorted(maps.Keys(d.Obligations)))
			refuse(w, http.StatusForbidden, map[string]string{"error": "denied", "decision_id": d.ID})
		case d.Outcome == Allow:
			r.Header.Del("Authorization")
			r.Header.Del("DPoP")
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), decisionKey{}, d)))
		case d.Outcome == PendingApproval:
			refuse(w, http.StatusForbidden, map[string]string{"error": "approval_required", "decision_id": d.ID})
		case len(d.Reasons) == 1 && wire.RateLimited(d.Reasons[0]):
			w.Header().Set("Retry-After", "1")
			refuse(w, http.StatusTooManyRequests, map[string]string{"error": "too many requests", "decision_id": d.ID})
		case len(d.Reasons) == 1 && wire.AuthFailure(d.Reasons[0]):
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`%s error="invalid_token", error_description=%q`, creds.Scheme, d.Reasons[0]))
			refuse(w, http.StatusUnauthorized, map[string]string{"error": "not authenticated", "decision_id": d.ID})
		default:
			refuse(w, http.StatusForbidden, map[string]string{"error": "denied", "decision_id": d.ID})
		}
	})
}

// canApply says whether the handler applies every one of obligations.
func (e *Enforcer) canApply(obligations map[string]any) bool {
	for name := range obligations {
		if !slices.Contains(e.applies, name) {
			return false
		}
	}
	return true
}

func refuse(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
