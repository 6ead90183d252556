package sdk

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/warden-run/warden/internal/identity"
)

// Client gets access tokens for one agent from a Warden server and keeps
// them fresh. It is safe for concurrent use.
type Client struct {
	server   string
	agentID  string
	key      *Key
	http     *http.Client
	issuer   string // expected issuer identifier
	scope    string
	resource string
	task     string
	life     time.Duration
	dpop     bool

	mu       sync.Mutex
	meta     *serverMetadata
	current  *Token
	inflight chan struct{} // closed when the running refresh ends
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client used to reach the server.
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// WithIssuer sets the issuer identifier the server must announce in its
// metadata, when it differs from the server URL (a server behind a proxy).
func WithIssuer(issuer string) Option {
	return func(c *Client) { c.issuer = strings.TrimSuffix(issuer, "/") }
}

// WithScope asks for a subset of the agent's roles, space-separated, in the
// tokens the client fetches for itself.
func WithScope(scope string) Option { return func(c *Client) { c.scope = scope } }

// WithResource asks for tokens for one resource server (RFC 8707), such as
// the URL of an MCP gateway: their aud is that resource, and only it
// accepts them.
func WithResource(uri string) Option { return func(c *Client) { c.resource = uri } }

// WithTask asks for tokens bound to task, which the agent holds a grant
// for (AskGrant): its decisions then see that task's grants.
func WithTask(task string) Option { return func(c *Client) { c.task = task } }

// WithLifetime asks for tokens of this lifetime; the server refuses more
// than its max_token_ttl (at most 15 minutes).
func WithLifetime(d time.Duration) Option { return func(c *Client) { c.life = d } }

// WithDPoP sends a DPoP proof with the token request, so the server issues
// token_type DPoP.
func WithDPoP() Option { return func(c *Client) { c.dpop = true } }

// NewClient makes a client for agentID, which authenticates with key to the
// Warden server at serverURL (such as http://127.0.0.1:7070).
func NewClient(serverURL, agentID string, key *Key, opts ...Option) (*Client, error) {
	if _, err := identity.ParseAgentID(agentID); err != nil {
		return nil, err
	}
	if key == nil {
		return nil, errors.New("sdk: a key is required")
	}
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("sdk: server %q: want an http(s) URL", serverURL)
	}
	c := &Client{server: strings.TrimSuffix(serverURL, "/"), agentID: agentID, key: key, http: &http.Client{Timeout: 30 * time.Second}}
	c.issuer = c.server
	for _, o := range opts {
		o(c)
	}
	// Metadata and token requests never follow redirects: a token request
	// carries a client assertion, and a delegation a token, that must reach
	// the server the caller named and nothing else.
	noRedirect := *c.http
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.http = &noRedirect
	return c, nil
}

// Token is an access token and what the server said about it.
type Token struct {
	AccessToken string
	TokenType   string
	Scope       string
	Expiry      time.Time
	issued      time.Time
}

// String never shows the token itself.
func (t *Token) String() string {
	return fmt.Sprintf("%s token, scope %q, expires %s", t.TokenType, t.Scope, t.Expiry.Format(time.RFC3339))
}

// fresh reports whether t can still be handed out: more than a fifth of its
// lifetime and more than 10 seconds left.
func (t *Token) fresh(now time.Time) bool {
	if t == nil {
		return false
	}
	left := t.Expiry.Sub(now)
	return left > 10*time.Second && left > t.Expiry.Sub(t.issued)/5
}

// Token returns a valid access token, fetching a new one when the current
// one nears its expiry. Concurrent callers share one fetch.
func (c *Client) Token(ctx context.Context) (*Token, error) {
	for {
		c.mu.Lock()
		if c.current.fresh(time.Now()) {
			t := c.current
			c.mu.Unlock()
			return t, nil
		}
		if wait := c.inflight; wait != nil {
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		done := make(chan struct{})
		c.inflight = done
		c.mu.Unlock()

		t, err := c.FetchToken(ctx)
		c.mu.Lock()
		if err == nil {
			c.current = t
		}
		c.inflight = nil
		close(done)
		c.mu.Unlock()
		return t, err
	}
}

// drop forgets tok if it is the current token, so that the next Token
// fetches a new one.
func (c *Client) drop(tok *Token) {
	c.mu.Lock()
	if c.current == tok {
		c.current = nil
	}
	c.mu.Unlock()
}

// FetchToken always asks the server for a new token.
func (c *Client) FetchToken(ctx context.Context) (*Token, error) {
	form := url.Values{"grant_type": {identity.GrantClientCredentials}}
	if c.scope != "" {
		form.Set("scope", c.scope)
	}
	if c.resource != "" {
		form.Set("resource", c.resource)
	}
	if c.task != "" {
		form.Set("task", c.task)
	}
	if c.life > 0 {
		form.Set("expires_in", strconv.FormatInt(int64(c.life/time.Second), 10))
	}
	return c.tokenRequest(ctx, form, c.dpop)
}

// Delegate hands subjectToken, which this agent holds, on to the agent
// delegate (RFC 8693 token exchange). The answer is a token for delegate to
// use on the subject's behalf: bound to delegate's key, with the roles both
// share, for the client's resource (WithResource) when it has one. Give it
// to delegate; only delegate can present it.
func (c *Client) Delegate(ctx context.Context, subjectToken, delegate string) (*Token, error) {
	return c.DelegateTask(ctx, subjectToken, delegate, "")
}

// DelegateTask delegates as Delegate does, and binds the token to task: what
// delegate reads under it taints that task only (and its own, task-less
// tokens), so a fresh task starts clean. A token bound to a task stays bound
// to it when delegated further. Empty task is Delegate.
func (c *Client) DelegateTask(ctx context.Context, subjectToken, delegate, task string) (*Token, error) {
	if _, err := identity.ParseAgentID(delegate); err != nil {
		return nil, err
	}
	form := url.Values{
		"grant_type":         {identity.GrantTokenExchange},
		"subject_token":      {subjectToken},
		"subject_token_type": {identity.TokenTypeAccessToken},
		"audience":           {delegate},
	}
	if c.resource != "" {
		form.Set("resource", c.resource)
	}
	if task != "" {
		form.Set("task", task)
	}
	return c.tokenRequest(ctx, form, false) // a proof of this agent's key cannot bind the delegate's token
}

// Error is an OAuth error answer from the server.
type Error struct {
	Status      int
	Code        string `json:"error"`
	Description string `json:"error_description"`
	// RefusalID names the server's record of the refusal, when it has
	// one of its own: an operator finds the reason by it in the audit log.
	RefusalID string `json:"refusal_id"`
}

func (e *Error) Error() string {
	msg := "token endpoint: " + e.Code
	if e.Description != "" {
		msg += ": " + e.Description
	}
	msg += fmt.Sprintf(" (HTTP %d)", e.Status)
	if e.RefusalID != "" {
		msg += "; the server's record of it is " + e.RefusalID
	}
	return msg
}

type serverMetadata struct {
	Issuer        string `json:"issuer"`
	TokenEndpoint string `json:"token_endpoint"`
}

// metadata learns the issuer identifier and token endpoint (RFC 8414).
func (c *Client) metadata(ctx context.Context) (*serverMetadata, error) {
	c.mu.Lock()
	m := c.meta
	c.mu.Unlock()
	if m != nil {
		return m, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.server+"/.well-known/oauth-authorization-server", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("server metadata: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("server metadata: HTTP %d", resp.StatusCode)
	}
	m = &serverMetadata{}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(m); err != nil || m.Issuer == "" || m.TokenEndpoint == "" {
		return nil, errors.New("server metadata is not RFC 8414 metadata")
	}
	// RFC 8414 section 3.3: the metadata must name the issuer it was asked for,
	// and the token endpoint must be the issuer's own.
	if m.Issuer != c.issuer {
		return nil, fmt.Errorf("the server's metadata names the issuer %q, not %q; use that URL as the server, or set the issuer", m.Issuer, c.issuer)
	}
	if !sameOrigin(m.TokenEndpoint, m.Issuer) && !sameOrigin(m.TokenEndpoint, c.server) {
		return nil, fmt.Errorf("the token endpoint %q is not on the issuer's or the server's host", m.TokenEndpoint)
	}
	c.mu.Lock()
	c.meta = m
	c.mu.Unlock()
	return m, nil
}

func (c *Client) tokenRequest(ctx context.Context, form url.Values, dpop bool) (*Token, error) {
	m, err := c.metadata(ctx)
	if err != nil {
		return nil, err
	}
	assertion, err := c.key.Assertion(c.agentID, m.Issuer)
	if err != nil {
		return nil, err
	}
	form.Set("client_assertion_type", identity.AssertionTypeJWTBearer)
	form.Set("client_assertion", assertion)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.TokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if dpop {
		p, err := c.key.DPoPProof(http.MethodPost, m.TokenEndpoint, "")
		if err != nil {
			return nil, err
		}
		req.Header.Set("DPoP", p)
	}
	sent := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("token request: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("token response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(body, e) != nil || e.Code == "" {
			e.Code = "http_error"
		}
		return nil, e
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
		Scope       string `json:"scope"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" || tr.ExpiresIn <= 0 {
		return nil, errors.New("the token response is not an OAuth token response")
	}
	// Expiry counted from when the request left: never later than the server's.
	return &Token{AccessToken: tr.AccessToken, TokenType: tr.TokenType, Scope: tr.Scope,
		Expiry: sent.Add(time.Duration(tr.ExpiresIn) * time.Second), issued: sent}, nil
}

// Transport returns an http.RoundTripper that sends every request with this
// agent's access token and a fresh DPoP proof. base nil means
// http.DefaultTransport.
func (c *Client) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{c: c, base: base}
}

type transport struct {
	c    *Client
	base http.RoundTripper
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	// A redirect away from the origin of the first request gets no
	// credentials: they are for the service the caller chose, not wherever
	// it points, however many hops later.
	if first := firstRequest(r); first != r && !sameOrigin(r.URL.String(), first.URL.String()) {
		return t.base.RoundTrip(r)
	}
	tok, err := t.c.Token(r.Context())
	if err != nil {
		return nil, err
	}
	resp, err := t.send(r, tok)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") {
		return resp, err
	}
	// The token was refused (revoked, say, by a step-up): once, with a new
	// one, when the request can be sent again.
	if r.Body != nil && r.Body != http.NoBody && r.GetBody == nil {
		return resp, nil
	}
	t.c.drop(tok)
	fresh, err := t.c.Token(r.Context())
	if err != nil || fresh == tok {
		return resp, nil
	}
	if r.GetBody != nil {
		body, err := r.GetBody()
		if err != nil {
			return resp, nil
		}
		r = r.Clone(r.Context())
		r.Body = body
	}
	resp.Body.Close()
	return t.send(r, fresh)
}

// send sends r with tok and a fresh proof.
func (t *transport) send(r *http.Request, tok *Token) (*http.Response, error) {
	proof, err := t.c.key.DPoPProof(r.Method, r.URL.String(), tok.AccessToken)
	if err != nil {
		return nil, err
	}
	r = r.Clone(r.Context())
	scheme := "Bearer"
	if strings.EqualFold(tok.TokenType, "DPoP") {
		scheme = "DPoP"
	}
	r.Header.Set("Authorization", scheme+" "+tok.AccessToken)
	r.Header.Set("DPoP", proof)
	return t.base.RoundTrip(r)
}

// firstRequest follows a redirected request back to the one the caller made.
func firstRequest(r *http.Request) *http.Request {
	for r.Response != nil && r.Response.Request != nil {
		r = r.Response.Request
	}
	return r
}

// sameOrigin reports whether two URLs share scheme, host and port.
func sameOrigin(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	return err1 == nil && err2 == nil && ua.Scheme != "" && strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Host, ub.Host)
}

// UserInput is the value of the Warden-User-Input header that tells the MCP
// gateway what the user asked for (their request, as they wrote it): values
// in it count as the user's in the provenance of the agent's arguments, so
// that a recipient or an amount the user gave is not mistaken for one an
// untrusted page suggested. Send it with the agent's requests (an
// http.RoundTripper that sets it, or the MCP client's headers).
func UserInput(request string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(request))
}
