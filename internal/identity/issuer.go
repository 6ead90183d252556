package identity

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/warden-run/warden/internal/store"
)

// OAuth 2.0 grant and token type identifiers Warden speaks.
const (
	GrantClientCredentials = "client_credentials"
	GrantTokenExchange     = "urn:ietf:params:oauth:grant-type:token-exchange"
	AssertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	TokenTypeAccessToken   = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeJWT           = "urn:ietf:params:oauth:token-type:jwt"
)

// IssuerConfig configures a TokenIssuer.
type IssuerConfig struct {
	// Issuer is iss of every token and the aud client assertions must name.
	Issuer string
	// Audience is aud of access tokens whose request names no resource.
	Audience string
	// Resources are the other resource indicators (RFC 8707) a client may
	// name: the URLs of enforcement points that accept only tokens issued
	// for them, such as an MCP gateway. A token asked for one of them has
	// it as its aud.
	Resources []string
	// TokenTTL is the lifetime when the client asks for none; MaxTokenTTL the
	// longest it may ask for (never above MaxTokenLifetime).
	TokenTTL, MaxTokenTTL time.Duration
	ClockSkew             time.Duration
	TrustDomains          map[string]DomainPolicy
	// Limits bound failed authentications; zero fields take
	// DefaultTokenEndpointLimits.
	Limits TokenEndpointLimits
	Logger *slog.Logger
	Now    func() time.Time
}

// TokenIssuer is the token endpoint: it authenticates agents by their own
// signed client assertions (RFC 7523) and issues short-lived access tokens
// bound to the agent's key, and delegated tokens by token exchange (RFC 8693).
type TokenIssuer struct {
	cfg IssuerConfig
	// taskGranted says whether an agent holds a grant for a task, which
	// lets it ask for tokens bound to that task (SetTaskGrants).
	taskGranted atomic.Pointer[func(agent, task string) bool]
	replay      store.ReplayStore
	keys        *Keyring
	verifier    *Verifier
	dpop        *DPoPVerifier
	audit       AuditLog
	brake       *authBrake
	refusals    *refusalRecorder
	log         *slog.Logger
	now         func() time.Time
	sleep       func(context.Context, time.Duration) error
	// decoyKey verifies the assertions of agents that are unknown or may
	// not authenticate (inactive, or a kid that is not theirs), so that
	// they cost the same signature check as a known agent's bad one and
	// the time of a refusal does not tell which agents exist.
	decoyKey ed25519.PublicKey
	// verifySignature checks an assertion's signature (tests count calls).
	verifySignature func(jws *jose.JSONWebSignature, key ed25519.PublicKey) bool
	// done stops the summaries of refusals; stopped says they have.
	done, stopped chan struct{}
	closeOnce     sync.Once
}

// NewTokenIssuer makes a token endpoint. It knows agents through the
// verifier's TrustView, checks subject and actor tokens with the verifier,
// records assertion ids in replay, and every token issued or refused in
// the audit log.
func NewTokenIssuer(cfg IssuerConfig, replay store.ReplayStore, keys *Keyring, verifier *Verifier, log AuditLog) (*TokenIssuer, error) {
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("issuer: Issuer and Audience are required")
	}
	if cfg.MaxTokenTTL <= 0 || cfg.MaxTokenTTL > MaxTokenLifetime || cfg.TokenTTL <= 0 || cfg.TokenTTL > cfg.MaxTokenTTL {
		return nil, fmt.Errorf("issuer: want 0 < TokenTTL <= MaxTokenTTL <= %s", MaxTokenLifetime)
	}
	if log == nil {
		return nil, errors.New("issuer: an audit log is required")
	}
	l := &cfg.Limits
	for _, r := range []struct {
		r   *Rate
		def Rate
	}{{&l.FailuresPerSource, DefaultTokenEndpointLimits.FailuresPerSource},
		{&l.FailuresPerAgent, DefaultTokenEndpointLimits.FailuresPerAgent},
		{&l.RequestsPerAgent, DefaultTokenEndpointLimits.RequestsPerAgent},
		{&l.RefusalEntries, DefaultTokenEndpointLimits.RefusalEntries}} {
		if *r.r == (Rate{}) {
			*r.r = r.def
		}
		if !r.r.valid() {
			return nil, fmt.Errorf("issuer: limit %s: want a positive, finite rate and a burst of at least 1", r.r)
		}
	}
	now := orNow(cfg.Now)
	decoy, _ := GenerateKey()
	logger := orDiscard(cfg.Logger)
	i := &TokenIssuer{
		cfg: cfg, replay: replay, keys: keys, verifier: verifier, audit: log, done: make(chan struct{}), stopped: make(chan struct{}),
		dpop:     NewDPoPVerifier(DPoPConfig{ClockSkew: cfg.ClockSkew, Logger: logger, Now: now}),
		brake:    newAuthBrake(cfg.Limits),
		refusals: newRefusalRecorder(log, logger, cfg.Limits.RefusalEntries),
		log:      logger, now: now, sleep: sleepCtx, decoyKey: decoy,
		verifySignature: func(jws *jose.JSONWebSignature, key ed25519.PublicKey) bool {
			_, err := jws.Verify(key)
			return err == nil
		},
	}
	go i.summariseRefusals()
	return i, nil
}

// summariseRefusals writes the counted refusals once their
// RefusalSummaryInterval is over, whether or not requests keep coming,
// until Close: it looks every second.
func (i *TokenIssuer) summariseRefusals() {
	defer close(i.stopped)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-i.done:
			return
		case <-t.C:
			i.refusals.maybeSummarise(context.Background(), i.now())
		}
	}
}

// Close records the refusals counted since the last summary. Call it
// before closing the audit log.
func (i *TokenIssuer) Close() {
	i.closeOnce.Do(func() {
		close(i.done)
		<-i.stopped
		i.refusals.summarise(context.Background(), i.now())
	})
}

// SetTaskGrants lets agents ask for tokens bound to a task they hold a
// grant for: granted answers whether they do.
func (i *TokenIssuer) SetTaskGrants(granted func(agent, task string) bool) {
	i.taskGranted.Store(&granted)
}

// TokenEndpoint is the URL of the token endpoint: what DPoP proofs sent to it must name.
func (i *TokenIssuer) TokenEndpoint() string { return i.cfg.Issuer + "/oauth/token" }

// TokenRequest is a token endpoint request (form parameters of RFC 6749,
// 7521/7523 and 8693).
type TokenRequest struct {
	GrantType           string
	ClientID            string
	ClientAssertionType string
	ClientAssertion     string
	Scope               string
	Resource            string
	// ExpiresIn is a requested lifetime in seconds; zero for the default.
	ExpiresIn int64
	// Token exchange.
	SubjectToken       string
	SubjectTokenType   string
	ActorToken         string
	ActorTokenType     string
	Audience           string
	RequestedTokenType string
	// Task binds a delegated token to a task of the delegating agent's
	// (token exchange only): the scope of the taints its reads set.
	Task string
	// DPoP is the proof from the DPoP request header, if any.
	DPoP string
	// Source is the client's address, for the rate limits and the record.
	Source string

	attempt *attempt
}

// attempt is what the token endpoint learns of a request on the way.
type attempt struct {
	brake   brakeTicket
	claimed string // the agent the assertion names, not yet verified
}

// IssuedToken is a successful token response.
type IssuedToken struct {
	AccessToken     string `json:"access_token"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	Scope           string `json:"scope,omitempty"`
	IssuedTokenType string `json:"issued_token_type,omitempty"`
	// For the server's log, never sent.
	Subject string   `json:"-"`
	JTI     string   `json:"-"`
	Chain   []string `json:"-"`
}

// Issue handles one token request. A token is returned once its audit
// entry is durable; a refusal is recorded (one by one, or counted in a
// summary under a flood) and counts against the rate limits when the
// client failed to authenticate.
func (i *TokenIssuer) Issue(ctx context.Context, req TokenRequest) (*IssuedToken, error) {
	action := ActionTokenRequest
	switch req.GrantType {
	case GrantClientCredentials:
		action = ActionTokenIssue
	case GrantTokenExchange:
		action = ActionTokenExchange
	}
	var it *IssuedToken
	err := i.braked(ctx, action, &req, func() error {
		var err error
		switch req.GrantType {
		case GrantClientCredentials:
			it, err = i.clientCredentials(ctx, req)
		case GrantTokenExchange:
			it, err = i.exchange(ctx, req)
		case "":
			err = fmt.Errorf("%w: grant_type is required", ErrInvalidRequest)
		default:
			err = fmt.Errorf("%w: %q", ErrUnsupportedGrant, req.GrantType)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return it, nil
}

// braked runs one request under the rate limits of failed authentication
// and records it if it is refused.
func (i *TokenIssuer) braked(ctx context.Context, action string, req *TokenRequest, run func() error) error {
	now := i.now()
	req.attempt = &attempt{}
	err := i.brake.admitSource(&req.attempt.brake, req.Source, now)
	if err == nil {
		err = run()
		i.brake.settle(&req.attempt.brake, failedAuthentication(err), i.now())
	}
	if err != nil {
		return i.refusals.refused(ctx, action, *req, err, i.now())
	}
	i.refusals.maybeSummarise(ctx, now)
	return nil
}

// failedAuthentication says whether err is a failure the client caused by
// presenting credentials that do not verify: those count against the rate
// limits. Warden's own failures and the rate limits' refusals do not.
func failedAuthentication(err error) bool {
	switch {
	case err == nil, errors.Is(err, ErrTooManyFailures), errors.Is(err, ErrTooManyRequests), errors.Is(err, ErrStateUnavailable), errors.Is(err, ErrUnavailable):
		return false
	}
	return errors.Is(err, errClientAuth) || errors.Is(err, errSubjectToken) || errors.Is(err, ErrDPoP) || errors.Is(err, ErrDPoPKeyMismatch)
}

// RecordRefusal records a token endpoint request refused before it reached
// the issuer (a form that does not parse), as Issue records its own, and
// returns err with the id of its record (RefusalID).
func (i *TokenIssuer) RecordRefusal(ctx context.Context, action string, req TokenRequest, err error) error {
	return i.refusals.refused(ctx, action, req, err, i.now())
}

func (i *TokenIssuer) clientCredentials(ctx context.Context, req TokenRequest) (*IssuedToken, error) {
	ttl, err := i.lifetime(req)
	if err != nil {
		return nil, err
	}
	aud, err := i.audience(req.Resource)
	if err != nil {
		return nil, err
	}
	if req.SubjectToken != "" || req.ActorToken != "" {
		return nil, fmt.Errorf("%w: subject_token and actor_token belong to token exchange", ErrInvalidRequest)
	}
	if req.Task != "" && !ValidTask(req.Task) {
		return nil, fmt.Errorf("%w: task %q: 1 to 128 of A-Z a-z 0-9 . _ : -", ErrInvalidRequest, req.Task)
	}
	c, err := i.authenticate(ctx, req)
	if err != nil {
		return nil, err
	}
	if req.Task != "" {
		// An agent cannot give itself a fresh task: only a task a grant was
		// given for (by policy, or approvers), or one a delegating agent
		// binds at token exchange.
		granted := i.taskGranted.Load()
		if granted == nil || !(*granted)(c.id.String(), req.Task) {
			return nil, fmt.Errorf("%w: task %q: the agent holds no grant for it (a delegating agent binds tasks at token exchange)", ErrInvalidRequest, req.Task)
		}
	}
	roles, err := narrowRoles(c.agent.Roles, req.Scope, ErrInvalidScope)
	if err != nil {
		return nil, err
	}
	tokenType, err := i.checkTokenEndpointProof(req, c.kid)
	if err != nil {
		return nil, err
	}
	if err := i.consume(ctx, c); err != nil {
		return nil, err
	}
	if err := i.waitPastRevocation(ctx, c.agent); err != nil {
		return nil, err
	}
	now := i.now()
	if SteppedUp(c.agent, now) {
		ttl = min(ttl, StepUpTokenTTL)
	}
	cl := i.claims(c.id.String(), c.id.String(), c.kid, roles, nil, aud, now, now.Add(ttl))
	cl.Task = req.Task
	tok, err := i.sign(cl)
	if err != nil {
		return nil, err
	}
	if err := i.recordIssued(ctx, ActionTokenIssue, req, cl, tokenType); err != nil {
		return nil, err
	}
	return &IssuedToken{AccessToken: tok, TokenType: tokenType, ExpiresIn: int64(ttl / time.Second),
		Scope: strings.Join(roles, " "), Subject: cl.Subject, JTI: cl.ID}, nil
}

func (i *TokenIssuer) lifetime(req TokenRequest) (time.Duration, error) {
	switch {
	case req.ExpiresIn == 0:
		return i.cfg.TokenTTL, nil
	case req.ExpiresIn < 0:
		return 0, fmt.Errorf("%w: expires_in must be positive", ErrInvalidRequest)
	case req.ExpiresIn > int64(i.cfg.MaxTokenTTL/time.Second):
		return 0, fmt.Errorf("%w: %w: %d seconds asked, at most %d allowed", ErrInvalidRequest, ErrLifetime,
			req.ExpiresIn, int64(i.cfg.MaxTokenTTL/time.Second))
	}
	return time.Duration(req.ExpiresIn) * time.Second, nil
}

// audience is the aud of a token asked for resource ("" for the default).
func (i *TokenIssuer) audience(resource string) (string, error) {
	if resource == "" || resource == i.cfg.Audience || slices.Contains(i.cfg.Resources, resource) {
		if resource == "" {
			return i.cfg.Audience, nil
		}
		return resource, nil
	}
	return "", fmt.Errorf("%w: resource %q is not served here", ErrInvalidTarget, resource)
}

// checkTokenEndpointProof verifies an optional DPoP proof sent with the
// token request; it must be made with the key that signed the assertion.
func (i *TokenIssuer) checkTokenEndpointProof(req TokenRequest, kid string) (string, error) {
	if req.DPoP == "" {
		return "Bearer", nil
	}
	if _, err := i.dpop.Verify(req.DPoP, DPoPCheck{Method: "POST", URL: i.TokenEndpoint(), JKT: kid}); err != nil {
		return "", err
	}
	return "DPoP", nil
}

// consume records the assertion's jti, refusing a replay, within the
// agent's rate of requests. The rate is charged once every other check has
// passed and given back when the jti is not recorded: a captured assertion
// replayed cannot spend its owner's requests, and one the rate refuses is
// not used up.
func (i *TokenIssuer) consume(ctx context.Context, c *client) error {
	if err := i.brake.admitRequest(c.id.String(), i.now()); err != nil {
		return err
	}
	err := i.replay.MarkUsed(ctx, "client_assertion:"+c.id.String(), c.jti, c.exp.Add(i.cfg.ClockSkew))
	if err != nil {
		i.brake.refundRequest(c.id.String(), i.now())
	}
	switch {
	case errors.Is(err, store.ErrReplay):
		return fmt.Errorf("%w: %w: assertion jti of %s", errClientAuth, ErrReplay, c.id)
	case err != nil:
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// waitPastRevocation delays issuance to the next second when the agents'
// tokens were revoked in the current one: a token's iat must be after the
// revocation second, or it would be born revoked.
func (i *TokenIssuer) waitPastRevocation(ctx context.Context, agents ...store.Agent) error {
	var latest time.Time
	for _, a := range agents {
		if a.TokensRevokedAt.After(latest) {
			latest = a.TokensRevokedAt
		}
	}
	if latest.IsZero() {
		return nil
	}
	next := time.Unix(latest.Unix()+1, 0)
	if wait := next.Sub(i.now()); wait > 0 {
		return i.sleep(ctx, wait)
	}
	return nil
}

func (i *TokenIssuer) claims(sub, clientID, jkt string, roles []string, act *Actor, aud string, now, exp time.Time) *Claims {
	sid, _ := ParseAgentID(sub)
	if roles == nil {
		roles = []string{}
	}
	return &Claims{
		Issuer:      i.cfg.Issuer,
		Subject:     sub,
		Audience:    jwt.Audience{aud},
		Expiry:      jwt.NewNumericDate(exp),
		IssuedAt:    jwt.NewNumericDate(now),
		NotBefore:   jwt.NewNumericDate(now),
		ID:          newJTI(),
		ClientID:    clientID,
		Cnf:         &Confirmation{JKT: jkt},
		TrustDomain: sid.TrustDomain(),
		Roles:       roles,
		Act:         act,
	}
}

func (i *TokenIssuer) sign(c *Claims) (string, error) {
	k, err := i.keys.current()
	if err != nil {
		return "", err
	}
	// encoding/json marshals the claims several times faster than the JOSE
	// library's own encoder; the library still builds and signs the JWS.
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	jws, err := k.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return jws.CompactSerialize()
}

// narrowRoles returns the roles a scope asks for, all of which must be in
// have; an empty scope means all of have.
func narrowRoles(have []string, scope string, refusal error) ([]string, error) {
	want := strings.Fields(scope)
	if len(want) == 0 {
		return slices.Clone(have), nil
	}
	var out []string
	for _, r := range want {
		if !slices.Contains(have, r) {
			return nil, fmt.Errorf("%w: role %q is not available", refusal, r)
		}
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out, nil
}

func newJTI() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// AuthenticateClient authenticates a request by its client assertion alone
// and consumes the assertion, for endpoints other than the token endpoint
// (revocation).
func (i *TokenIssuer) AuthenticateClient(ctx context.Context, req TokenRequest) (AgentID, error) {
	var id AgentID
	err := i.braked(ctx, ActionTokenRevoke, &req, func() error {
		c, err := i.authenticate(ctx, req)
		if err != nil {
			return err
		}
		if err := i.consume(ctx, c); err != nil {
			return err
		}
		id = c.id
		return nil
	})
	return id, err
}
