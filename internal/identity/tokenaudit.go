package identity

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warden-run/warden/internal/audit"
)

// AuditLog is where the token endpoint records what it issues and refuses:
// the audit log, whose group commit shares one sync among concurrent
// entries.
type AuditLog interface {
	// AppendDurable returns once the entry is durable.
	AppendDurable(ctx context.Context, e *audit.Entry) (int64, error)
	// Append returns as the log's mode says (durable, or queued).
	Append(ctx context.Context, e *audit.Entry) (int64, error)
}

// Actions of token entries.
const (
	ActionTokenIssue    = "token.issue"    // client_credentials
	ActionTokenExchange = "token.exchange" // RFC 8693 delegation
	ActionTokenRevoke   = "token.revoke"   // a refused revocation request (RFC 7009)
	ActionTokenRequest  = "token.request"  // a refused request with no or an unknown grant type
	// ActionTokenRefusals summarises the refusals of an interval that
	// were not recorded one by one.
	ActionTokenRefusals = "token.refusals"
)

// Outcomes of token entries, as decisions have them: allow is a token
// issued, deny a refusal.
const (
	outcomeIssued  = "allow"
	outcomeRefused = "deny"
)

// issuedDetail is the detail of a token entry: never the token itself.
// Fields are in the byte order of their names, so that the encoding is
// already canonical.
type issuedDetail struct {
	Act           []string `json:"act,omitempty"`
	Audience      string   `json:"audience"`
	Client        string   `json:"client"`
	DelegatedFrom []string `json:"delegated_from,omitempty"`
	Expires       string   `json:"expires"`
	JTI           string   `json:"jti"`
	Key           string   `json:"key"`
	Scope         string   `json:"scope"`
	Source        string   `json:"source,omitempty"`
	Task          string   `json:"task,omitempty"`
	TokenType     string   `json:"token_type"`
}

// recordIssued makes a token's entry durable before the token is handed
// out: a token nobody can find in the log is never acknowledged.
func (i *TokenIssuer) recordIssued(ctx context.Context, action string, req TokenRequest, c *Claims, tokenType string) error {
	d := issuedDetail{Act: c.Act.Chain(), Audience: c.Audience[0], Client: c.ClientID, DelegatedFrom: c.DelegatedFrom,
		Expires: c.Expiry.Time().UTC().Format(time.RFC3339), JTI: c.ID, Key: c.Cnf.JKT, Scope: strings.Join(c.Roles, " "),
		Source: req.Source, Task: c.Task, TokenType: tokenType}
	detail, err := json.Marshal(d)
	if err != nil {
		return err
	}
	e := &audit.Entry{Kind: audit.KindToken, Action: action, Agent: c.Subject, Outcome: outcomeIssued,
		Time: c.IssuedAt.Time(), Detail: detail}
	if _, err := i.audit.AppendDurable(ctx, e); err != nil {
		return fmt.Errorf("%w: audit log: %v", ErrUnavailable, err)
	}
	return nil
}

// refusalRecorder records refusals in the audit log and the server log,
// one by one within a budget (TokenEndpointLimits.RefusalEntries), and the
// rest, with every refusal the rate limits answered, as counts in one
// summary entry and one log line per RefusalSummaryInterval: a flood of
// bad requests costs the log a few entries a second, not one each.
type refusalRecorder struct {
	audit  AuditLog
	log    *slog.Logger
	budget *keyedLimiter // one key

	pending atomic.Int64 // refusals counted and not yet summarised
	mu      sync.Mutex
	since   time.Time
	counts  map[string]int64 // "error/cause" -> refusals
}

func newRefusalRecorder(a AuditLog, log *slog.Logger, budget Rate) *refusalRecorder {
	return &refusalRecorder{audit: a, log: log, budget: newKeyedLimiter(budget, 1), counts: map[string]int64{}}
}

// refusedDetail is the detail of a refusal entry. The agent a refused
// request names is not authenticated: it is claimed_agent, never the
// entry's agent.
type refusedDetail struct {
	ClaimedAgent string `json:"claimed_agent,omitempty"`
	Source       string `json:"source,omitempty"`
	RefusalID    string `json:"refusal_id,omitempty"`
}

// RefusedError is a refusal recorded on its own, by the id its entry and
// log line carry: the client is given the id, which tells an operator
// where the reason is and tells the client nothing.
type RefusedError struct {
	Err error
	ID  string
}

func (e *RefusedError) Error() string { return e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }

// RefusalID is the id of the record of the refusal err, "" when it was
// only counted (under a flood of refusals).
func RefusalID(err error) string {
	var re *RefusedError
	if errors.As(err, &re) {
		return re.ID
	}
	return ""
}

// refused records one refusal; it returns err with the id of its record
// when it is recorded on its own.
func (r *refusalRecorder) refused(ctx context.Context, action string, req TokenRequest, err error, now time.Time) error {
	oe := OAuthErrorFor(err)
	cause := refusalCause(err)
	limited := errors.Is(err, ErrTooManyFailures) || errors.Is(err, ErrTooManyRequests)
	if !limited {
		if ok, _, _ := r.budget.take(0, now); ok {
			id := newRefusalID()
			r.one(ctx, action, req, err, oe, cause, id, now)
			r.maybeSummarise(ctx, now)
			return &RefusedError{Err: err, ID: id}
		}
	}
	r.mu.Lock()
	if len(r.counts) == 0 {
		r.since = now
	}
	r.counts[oe.Code+"/"+cause]++
	r.mu.Unlock()
	r.pending.Add(1)
	r.maybeSummarise(ctx, now)
	return err
}

// newRefusalID makes a refusal's id: "ref_" and 16 random base32 letters.
func newRefusalID() string {
	b := make([]byte, 10)
	rand.Read(b)
	return "ref_" + strings.ToLower(base32.StdEncoding.EncodeToString(b))
}

func (r *refusalRecorder) one(ctx context.Context, action string, req TokenRequest, err error, oe OAuthError, cause, id string, now time.Time) {
	level := slog.LevelInfo
	if oe.Status >= http.StatusInternalServerError {
		level = slog.LevelError
	}
	claimed := claimedAgent(req)
	r.log.Log(ctx, level, "token request refused", "action", action, "error", oe.Code, "cause", cause,
		"reason", err.Error(), "source", req.Source, "claimed_agent", claimed, "refusal_id", id)
	detail, _ := json.Marshal(refusedDetail{ClaimedAgent: claimed, Source: req.Source, RefusalID: id})
	e := &audit.Entry{Kind: audit.KindToken, Action: action, Outcome: outcomeRefused, Reasons: []string{oe.Code, cause},
		Time: now, Detail: detail}
	if _, err := r.audit.Append(context.WithoutCancel(ctx), e); err != nil {
		r.log.Error("audit: a token refusal was not recorded", "err", err)
	}
}

// maybeSummarise writes the summary when the interval is over.
func (r *refusalRecorder) maybeSummarise(ctx context.Context, now time.Time) {
	if r.pending.Load() == 0 {
		return
	}
	r.mu.Lock()
	if now.Sub(r.since) < RefusalSummaryInterval {
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	r.summarise(ctx, now)
}

type summaryDetail struct {
	Count   int64            `json:"count"`
	Reasons map[string]int64 `json:"reasons"`
	Since   string           `json:"since"`
	Until   string           `json:"until"`
}

// summarise writes the counted refusals as one entry and one log line.
func (r *refusalRecorder) summarise(ctx context.Context, now time.Time) {
	r.mu.Lock()
	if len(r.counts) == 0 {
		r.mu.Unlock()
		return
	}
	d := summaryDetail{Reasons: r.counts, Since: r.since.UTC().Format(time.RFC3339Nano), Until: now.UTC().Format(time.RFC3339Nano)}
	for _, n := range r.counts {
		d.Count += n
	}
	r.counts = map[string]int64{}
	r.pending.Add(-d.Count)
	r.mu.Unlock()
	r.log.Warn("token requests refused (not recorded one by one)", "count", d.Count, "since", d.Since, "reasons", d.Reasons)
	detail, _ := json.Marshal(d)
	e := &audit.Entry{Kind: audit.KindToken, Action: ActionTokenRefusals, Outcome: outcomeRefused, Time: now, Detail: detail}
	if _, err := r.audit.Append(context.WithoutCancel(ctx), e); err != nil {
		r.log.Error("audit: a summary of token refusals was not recorded", "count", d.Count, "err", err)
	}
}

// claimedAgent is the agent id an assertion names, unverified, when it is
// one; empty otherwise.
func claimedAgent(req TokenRequest) string {
	claim := req.ClientID
	if req.attempt != nil && req.attempt.claimed != "" {
		claim = req.attempt.claimed
	}
	if id, err := ParseAgentID(claim); err == nil {
		return id.String()
	}
	return ""
}

// refusalCause names why a token request was refused, for the audit log
// and the server log (never for the client, which learns only the OAuth
// error).
func refusalCause(err error) string {
	for _, c := range refusalCauses {
		if errors.Is(err, c.err) {
			return c.cause
		}
	}
	return "other"
}

// refusalCauses are in order: the first that err wraps names it.
var refusalCauses = []struct {
	err   error
	cause string
}{
	{ErrTooManyFailures, "rate_limited"},
	{ErrTooManyRequests, "rate_limited"},
	{ErrClientAuthMethod, "unsupported_client_auth"},
	{ErrProofRateExceeded, "dpop_rate_exceeded"},
	{ErrStateUnavailable, "unavailable"},
	{ErrUnavailable, "unavailable"},
	{errSubjectToken, "invalid_subject_token"},
	{ErrUnknownAgent, "unknown_agent"},
	{ErrAgentInactive, "agent_inactive"},
	{ErrKeyNotBound, "key_not_bound"},
	{ErrSignature, "bad_signature"},
	{ErrReplay, "replayed"},
	{ErrExpired, "expired"},
	{ErrNotYetValid, "not_yet_valid"},
	{ErrLifetime, "lifetime"},
	{ErrWrongAudience, "wrong_audience"},
	{ErrUnknownDomain, "unknown_trust_domain"},
	{ErrInvalidAgentID, "malformed"},
	{ErrMalformed, "malformed"},
	{ErrAlgorithm, "malformed"},
	{ErrTokenType, "malformed"},
	{ErrMissingClaim, "malformed"},
	{ErrDelegationDenied, "delegation_denied"},
	{ErrDelegationWidens, "delegation_denied"},
	{ErrChainTooDeep, "delegation_denied"},
	{ErrDPoP, "invalid_dpop_proof"},
	{ErrDPoPKeyMismatch, "invalid_dpop_proof"},
	{ErrInvalidScope, "invalid_scope"},
	{ErrInvalidTarget, "invalid_target"},
	{ErrUnsupportedGrant, "unsupported_grant"},
	{ErrInvalidRequest, "invalid_request"},
}
