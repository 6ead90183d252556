package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/warden-run/warden/internal/enforce/cleanpath"
)

// Enforcer makes a Go HTTP service its own enforcement point: its
// Middleware asks a Warden server to decide every request (POST
// /v1/decide, as a registered enforcement point) before the handler runs.
// The agent's token and DPoP proof go to Warden, which verifies them; the
// answer is followed, and anything that is not an allow (an error, a slow
// or unreachable Warden) is a refusal.
type Enforcer struct {
	server     string
	credential string
	resource   string
	name       string
	http       *http.Client
	timeout    time.Duration
	maxBody    int64
	log        *slog.Logger
}

// EnforcerOption configures an Enforcer.
type EnforcerOption func(*Enforcer)

// WithDecisionTimeout bounds how long a request waits for its decision;
// after it the request is refused (default 2 s).
func WithDecisionTimeout(d time.Duration) EnforcerOption { return func(e *Enforcer) { e.timeout = d } }

// WithResourceName is where the service's requests are in policy:
// resource "<name>/<path>" of kind http.route (default the resource's host).
func WithResourceName(name string) EnforcerOption { return func(e *Enforcer) { e.name = name } }

// WithEnforcerLogger logs why a request got no decision (the agent is
// told only that there was none).
func WithEnforcerLogger(l *slog.Logger) EnforcerOption { return func(e *Enforcer) { e.log = l } }

// WithEnforcerHTTPClient sets the client that reaches Warden.
func WithEnforcerHTTPClient(c *http.Client) EnforcerOption { return func(e *Enforcer) { e.http = c } }

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
	e := &Enforcer{server: strings.TrimSuffix(serverURL, "/"), credential: credential, resource: strings.TrimSuffix(resource, "/"),
		name: u.Host, http: http.DefaultClient, timeout: 2 * time.Second, maxBody: 1 << 20, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(e)
	}
	return e, nil
}

// Decision is Warden's answer about a request, as the handler finds it
// with DecisionFrom: its id, and the obligations that came with the allow
// (such as fields to redact).
type Decision struct {
	ID            string         `json:"decision_id"`
	Outcome       string         `json:"outcome"`
	Reasons       []string       `json:"reasons"`
	Obligations   map[string]any `json:"obligations"`
	PolicyVersion string         `json:"policy_version"`
}

type decisionKey struct{}

// DecisionFrom returns the decision that let the request in.
func DecisionFrom(ctx context.Context) (Decision, bool) {
	d, ok := ctx.Value(decisionKey{}).(Decision)
	return d, ok
}

// Middleware decides every request before next sees it: action
// "http:<METHOD>", resource "<name>/<path>", its query and JSON body as
// arguments. Allowed requests reach next without the agent's credentials
// headers; the others get 401 (not authenticated), 403 (denied, or
// approval required, with the decision id) or 503 (no decision).
func (e *Enforcer) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		scheme, token, _ := strings.Cut(auth, " ")
		if token == "" || !(strings.EqualFold(scheme, "Bearer") || strings.EqualFold(scheme, "DPoP")) {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_request", error_description="an access token is required"`)
			refuse(w, http.StatusUnauthorized, map[string]string{"error": "an access token is required"})
			return
		}
		// Policy decides on the path as written: one the handler's router
		// could resolve to another ("/orders/../admin") is refused.
		if !cleanpath.OK(r.URL.Path) {
			refuse(w, http.StatusBadRequest, map[string]string{"error": "the path must not hold '.', '..' or empty segments"})
			return
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
		if body, err = canonicalBody(r.Header.Get("Content-Type"), body); err != nil {
			refuse(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		// The handler reads the body policy decided on.
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		d, err := e.decide(r, token, body)
		if err != nil {
			e.log.Warn("enforcer: no decision; refused", "method", r.Method, "path", r.URL.Path, "err", err)
			refuse(w, http.StatusServiceUnavailable, map[string]string{"error": "no decision could be made"})
			return
		}
		w.Header().Set("Warden-Decision-Id", d.ID)
		switch {
		case d.Outcome == "allow":
			r.Header.Del("Authorization")
			r.Header.Del("DPoP")
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), decisionKey{}, d)))
		case d.Outcome == "pending_approval":
			refuse(w, http.StatusForbidden, map[string]string{"error": "approval_required", "decision_id": d.ID})
		case len(d.Reasons) == 1 && authFailure(d.Reasons[0]):
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`%s error="invalid_token", error_description=%q`, scheme, d.Reasons[0]))
			refuse(w, http.StatusUnauthorized, map[string]string{"error": "not authenticated", "decision_id": d.ID})
		default:
			refuse(w, http.StatusForbidden, map[string]string{"error": "denied", "decision_id": d.ID})
		}
	})
}

// authFailure says whether a reason is about the agent's credentials.
func authFailure(reason string) bool {
	for _, p := range []string{"warden.token_", "warden.dpop_", "warden.key_not_bound"} {
		if strings.HasPrefix(reason, p) {
			return true
		}
	}
	return false
}

func (e *Enforcer) decide(r *http.Request, token string, body []byte) (Decision, error) {
	args := map[string]any{}
	if q := r.URL.Query(); len(q) > 0 {
		m := map[string]any{}
		for k, vs := range q {
			if len(vs) == 1 {
				m[k] = vs[0]
			} else {
				m[k] = vs
			}
		}
		args["query"] = m
	}
	if len(body) > 0 {
		args["content_type"] = r.Header.Get("Content-Type")
		if isJSON(r.Header.Get("Content-Type")) {
			args["body"] = json.RawMessage(body)
		}
	}
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	req := map[string]any{
		"token":    token,
		"audience": e.resource,
		"action":   "http:" + r.Method,
		"resource": map[string]any{"kind": "http.route", "id": e.name + r.URL.Path},
		"args":     args,
		"context":  map[string]any{"source": map[string]any{"ip": ip}},
	}
	if p := r.Header.Get("DPoP"); p != "" {
		req["dpop"], req["htm"], req["htu"] = p, r.Method, e.resource+r.URL.EscapedPath()
	}
	b, err := json.Marshal(req)
	if err != nil {
		return Decision{}, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), e.timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, e.server+"/v1/decide", bytes.NewReader(b))
	if err != nil {
		return Decision{}, err
	}
	hr.Header.Set("Authorization", "Bearer "+e.credential)
	hr.Header.Set("Content-Type", "application/json")
	resp, err := e.http.Do(hr)
	if err != nil {
		return Decision{}, err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Decision{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return Decision{}, fmt.Errorf("Warden answered %s: %s", resp.Status, strings.TrimSpace(string(rb)))
	}
	var d Decision
	if err := json.Unmarshal(rb, &d); err != nil || d.ID == "" || d.Outcome == "" {
		return Decision{}, errors.New("Warden's answer is not a decision")
	}
	return d, nil
}

func isJSON(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// canonicalBody re-encodes a JSON body (numbers as written, a key given
// twice once), so that policy and handler read the same; a body that says
// it is JSON and is not is an error.
func canonicalBody(contentType string, body []byte) ([]byte, error) {
	if len(body) == 0 {
		return body, nil
	}
	if _, _, err := mime.ParseMediaType(contentType); err != nil && contentType != "" {
		// The handler may read it as JSON all the same.
		return nil, fmt.Errorf("the Content-Type %q cannot be read", contentType)
	}
	if !isJSON(contentType) {
		return body, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("the body is not JSON: %v", err)
	}
	if dec.More() {
		return nil, errors.New("the body holds more than one JSON value")
	}
	return json.Marshal(v)
}

func refuse(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
