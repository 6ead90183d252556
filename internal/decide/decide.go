// Package decide is Warden's decision pipeline: it authenticates the agent
// behind an action, enriches the policy input, evaluates the live policy,
// records the decision in the audit log and only then answers.
package decide

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/decide/record"
	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
)

// ErrInvalidRequest means a decision request is malformed; it was neither
// decided nor recorded.
var ErrInvalidRequest = errors.New("invalid decision request")

// Request asks whether an agent may perform an action. The enforcement
// point that sends it has authenticated itself; the agent is known only by
// its token.
type Request struct {
	// Token is the agent's access token, as it presented it.
	Token string `json:"token"`
	// DPoP is the agent's proof of possession, with the method and URL of
	// the request it signed. Required when the agent's trust domain says so.
	DPoP string `json:"dpop,omitempty"`
	HTM  string `json:"htm,omitempty"`
	HTU  string `json:"htu,omitempty"`
	// Audience, when set, is the resource the enforcement point serves:
	// the token must have been issued for it (aud), or the answer is deny
	// (warden.token_wrong_audience).
	Audience string `json:"audience,omitempty"`
	// Action is what the agent does, such as "tools/call".
	Action   string   `json:"action"`
	Resource Resource `json:"resource"`
	// Args are the action's arguments: a JSON object, or absent.
	Args    json.RawMessage `json:"args,omitempty"`
	Context RequestContext  `json:"context"`

	// proofChecked says the enforcement point, in this process, verified
	// the DPoP proof itself (DecideVerified).
	proofChecked bool
}

// Resource is what an action is performed on. Attributes sent by the
// enforcement point count only for a resource the policy's catalog does not
// know.
type Resource struct {
	Kind       string         `json:"kind"`
	ID         string         `json:"id"`
	Attributes map[string]any `json:"attributes,omitempty"`
}

// UnmarshalJSON decodes a resource keeping the numbers in its attributes
// as written (not as 64-bit floats), and refusing unknown fields.
func (r *Resource) UnmarshalJSON(b []byte) error {
	type plain Resource
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	var p plain
	if err := dec.Decode(&p); err != nil {
		return err
	}
	*r = Resource(p)
	return nil
}

// RequestContext is what the enforcement point knows of the request.
type RequestContext struct {
	Source  Source  `json:"source"`
	Session Session `json:"session"`
}

// Source is where the agent's request came from.
type Source struct {
	// IP is the agent's address as the enforcement point saw it. The
	// region is derived from it by the configured ranges.
	IP string `json:"ip,omitempty"`
}

// Session identifies the agent's session at the enforcement point, and
// what the enforcement point knows happened in it.
type Session struct {
	ID string `json:"id,omitempty"`
	// Taints name what entered the session that policy may care about,
	// such as "untrusted_content" after a result from an untrusted server.
	Taints []string `json:"taints,omitempty"`
}

// Decision is the answer. It has been recorded when it is returned: its
// AuditIndex is its entry in the log (-1 in async audit mode, where the
// entry is queued, or when recording failed and the outcome is deny).
type Decision struct {
	ID            string         `json:"decision_id"`
	Outcome       policy.Outcome `json:"outcome"`
	Reasons       []string       `json:"reasons"`
	Obligations   map[string]any `json:"obligations"`
	PolicyVersion string         `json:"policy_version"`
	AuditIndex    int64          `json:"audit_index"`
}

// Reasons the pipeline gives before or after the policy.
const (
	ReasonAuditUnavailable   = "warden.audit_unavailable"
	ReasonTokenInvalid       = "warden.token_invalid"
	ReasonTokenExpired       = "warden.token_expired"
	ReasonTokenNotYetValid   = "warden.token_not_yet_valid"
	ReasonTokenRevoked       = "warden.token_revoked"
	ReasonWrongAudience      = "warden.token_wrong_audience"
	ReasonKeyNotBound        = "warden.key_not_bound"
	ReasonDPoPRequired       = "warden.dpop_required"
	ReasonDPoPInvalid        = "warden.dpop_invalid"
	ReasonAgentUnknown       = "warden.agent_unknown"
	ReasonAgentQuarantined   = "warden.agent_quarantined"
	ReasonAgentDisabled      = "warden.agent_disabled"
	ReasonTrustDomainUnknown = "warden.trust_domain_unknown"
	ReasonStateUnavailable   = "warden.state_unavailable"
	// ReasonDPoPRateExceeded: the key signed more DPoP proofs than
	// identity.dpop.proofs_per_key allows; the agent may try again shortly.
	ReasonDPoPRateExceeded = "warden.dpop_rate_exceeded"
)

// Reasons for decisions cut short: the caller went away before the
// decision was recorded (it is not: nobody gets the answer), or a batch's
// request budget was spent before the request's turn.
const (
	ReasonCanceled        = "warden.request_canceled"
	ReasonBudgetExhausted = "warden.request_budget_exhausted"
)

// Reasons about the enforcement point's audience: the request names an
// audience other than the enforcement point's (ReasonAudienceMismatch); an
// enforcement point in this process was given none (ReasonPointUnbound).
const (
	ReasonAudienceMismatch = "warden.audience_mismatch"
	ReasonPointUnbound     = "warden.enforcement_point_unbound"
)

// Config configures a Pipeline.
type Config struct {
	// Regions maps region names to the address ranges they cover; the
	// input's context.source.region is the first that holds the source IP.
	Regions map[string][]netip.Prefix
	// RecordInput puts each decision's input in its audit entry (its digest
	// is always there). Record says what the recorded copy leaves out:
	// secrets, and values too large to keep.
	RecordInput bool
	Record      record.Config
	// ShadowQueue bounds the shadow evaluations waiting to run; when it is
	// full, shadow evaluations are dropped (and counted), never decisions.
	ShadowQueue int
	// RequestBudget bounds the evaluation time of one batch or may-allow
	// request as a whole (default 1 s): what is left when it is spent is
	// denied or hidden, not evaluated.
	RequestBudget time.Duration
	// Taints, when set, keeps the agents' taints: every decision sees its
	// agent's, and an allowed read of an untrusted resource sets one.
	Taints Taints
	Logger *slog.Logger
	Now    func() time.Time
}

// Pipeline decides. It is safe for concurrent use; Close stops its shadow
// evaluator.
type Pipeline struct {
	cfg      Config
	regions  []region
	recorder *record.Recorder
	verifier *identity.Verifier
	view     *identity.TrustView
	policies *policy.Registry
	log      *audit.Log
	lg       *slog.Logger
	now      func() time.Time
	shadow   *shadowRunner
	work     work
}

type region struct {
	name   string
	prefix netip.Prefix
}

// New makes a pipeline over its parts.
func New(cfg Config, verifier *identity.Verifier, view *identity.TrustView, policies *policy.Registry, log *audit.Log) (*Pipeline, error) {
	if verifier == nil || view == nil || policies == nil || log == nil {
		return nil, errors.New("decide: verifier, view, policies and audit log are required")
	}
	p := &Pipeline{cfg: cfg, verifier: verifier, view: view, policies: policies, log: log,
		lg: orDiscard(cfg.Logger), now: orNow(cfg.Now)}
	for name, prefixes := range cfg.Regions {
		for _, pr := range prefixes {
			p.regions = append(p.regions, region{name, pr.Masked()})
		}
	}
	sortRegions(p.regions)
	var err error
	if p.recorder, err = record.New(cfg.Record); err != nil {
		return nil, fmt.Errorf("decide: %w", err)
	}
	if cfg.ShadowQueue <= 0 {
		cfg.ShadowQueue = 1024
	}
	if p.cfg.RequestBudget <= 0 {
		p.cfg.RequestBudget = DefaultRequestBudget
	}
	p.shadow = startShadow(cfg.ShadowQueue, log, p.lg)
	return p, nil
}

// Close stops the shadow evaluator after the queued evaluations.
func (p *Pipeline) Close() { p.shadow.close() }

// ShadowStats reports the shadow evaluations so far.
func (p *Pipeline) ShadowStats() ShadowStats { return p.shadow.stats() }

// Decide decides one request from the enforcement point pep. Every path
// that is not a clean allow is a deny with a reason; the decision is in the
// audit log before it is returned, and if it cannot be recorded it is a
// deny. Only a malformed request is an error (ErrInvalidRequest): it is
// neither decided nor recorded.
func (p *Pipeline) Decide(ctx context.Context, pep Point, req *Request) (Decision, error) {
	c, err := p.prepare(pep, req)
	if err != nil {
		return Decision{}, err
	}
	p.conclude(ctx, c)
	return p.record(ctx, c), nil
}

// decision is one decision in the making: the request (with what the
// enforcement point is trusted for), the answer, its audit entry and the
// entry's detail, the live policy it is made with, and its input once
// built.
type decision struct {
	pep    Point
	req    *Request
	args   map[string]any
	start  time.Time
	d      Decision
	e      *audit.Entry
	detail entryDetail
	live   *policy.Live
	now    time.Time
	input  map[string]any
	// newTaints were set by this decision (an allowed read that taints).
	newTaints []store.Taint
}

// prepare checks a request and begins its decision; a malformed request
// is an error (ErrInvalidRequest).
func (p *Pipeline) prepare(pep Point, req *Request) (*decision, error) {
	start := time.Now()
	if err := req.validate(); err != nil {
		return nil, err
	}
	args, err := req.args()
	if err != nil {
		return nil, err
	}
	c := p.begin(pep, req)
	c.start, c.args = start, args
	var dropped []string
	if c.req, dropped = pep.trusted(req); len(dropped) > 0 {
		c.detail["untrusted_context"] = dropped
	}
	return c, nil
}

// conclude decides c: authenticates, then evaluates, within ctx.
func (p *Pipeline) conclude(ctx context.Context, c *decision) {
	if tok, rec, ok := p.authenticate(ctx, c.pep, c.req, c); ok {
		p.evaluate(ctx, c.req, c.args, tok, rec, c)
	}
}

func (p *Pipeline) begin(pep Point, req *Request) *decision {
	c := &decision{pep: pep, req: req, detail: entryDetail{}, live: p.policies.Live(), now: p.now().UTC()}
	c.d = Decision{ID: newDecisionID(), Reasons: []string{}, Obligations: map[string]any{}, AuditIndex: -1}
	if c.live.Active != nil {
		c.d.PolicyVersion = c.live.Active.Version()
	}
	c.e = &audit.Entry{Kind: audit.KindDecision, Time: c.now, DecisionID: c.d.ID, Action: req.Action, EnforcementPoint: pep.Name}
	c.e.Resource, _ = json.Marshal(map[string]string{"kind": req.Resource.Kind, "id": req.Resource.ID})
	return c
}

// deny makes c a deny for reason.
func (c *decision) deny(reason string) { c.d.Outcome, c.d.Reasons = policy.Deny, []string{reason} }

// authenticate checks the agent's token (and DPoP proof), the enforcement
// point's audience, and the agent's state. Only an agent that passes them
// all is the entry's agent: a token refused for any reason (revoked,
// expired, for another resource) proves nothing of who sent it, so its
// subject is recorded as claimed (detail.claimed_agent), never as the agent.
func (p *Pipeline) authenticate(ctx context.Context, pep Point, req *Request, c *decision) (*identity.Token, store.Agent, bool) {
	var tok *identity.Token
	var err error
	if req.proofChecked {
		tok, err = p.verifier.Verify(ctx, req.Token)
	} else {
		tok, err = p.verifier.VerifyRequest(ctx, identity.Request{Token: req.Token, DPoP: req.DPoP, Method: req.HTM, URL: req.HTU})
	}
	if err != nil {
		c.deny(authReason(err))
		if t, ierr := p.verifier.Inspect(req.Token); ierr == nil {
			c.claim(t.Subject) // signed by the issuer, though refused: worth recording as such
		}
		p.lg.Info("decision: agent not authenticated", "decision_id", c.d.ID, "pep", pep.Name, "reason", c.d.Reasons[0], "err", err)
		return nil, store.Agent{}, false
	}
	rec, known := p.view.Agent(tok.Subject)
	wrongAudience, unchecked := pep.checkAudience(req, tok)
	if unchecked != "" {
		c.detail["audience_unchecked"] = string(unchecked)
	}
	switch {
	case wrongAudience != "":
		c.deny(wrongAudience)
	case !known:
		c.deny(ReasonAgentUnknown)
	case !rec.Status.MayHoldTokens():
		c.deny(statusReason(rec.Status))
	default:
		c.e.Agent = tok.Subject
		return tok, rec, true
	}
	c.claim(tok.Subject)
	return nil, store.Agent{}, false
}

// claim records subject as the agent a refused token names.
func (c *decision) claim(subject string) {
	c.detail["claimed_agent"] = map[string]any{"id": subject, "unverified": c.d.Reasons[0]}
}

// evaluate builds the input of an authenticated request, records it and
// evaluates the live policy on it.
func (p *Pipeline) evaluate(ctx context.Context, req *Request, args map[string]any, tok *identity.Token, rec store.Agent, c *decision) {
	if c.live.Active == nil {
		c.deny(policy.ReasonNoPolicy)
		return
	}
	// The policy's clock is the decision's second: a decision is a function
	// of its input, which the engine can then reuse.
	at := c.now.Truncate(time.Second)
	held, err := p.heldTaints(tok)
	if err != nil {
		p.lg.Warn("decision: the agent's taints are unknown; denied", "decision_id", c.d.ID, "err", err)
		c.deny(ReasonStateUnavailable)
		return
	}
	input := p.input(req, args, tok, rec, c.live.Active, at, held)
	raw, err := audit.AppendCanonical(nil, input)
	if err != nil {
		// Cannot happen with JSON-shaped input; fail closed all the same.
		c.deny(policy.ReasonError)
		return
	}
	r, err := p.recorder.Record(input, raw)
	if err != nil {
		c.deny(policy.ReasonError)
		return
	}
	c.input = input
	c.e.InputDigest = r.Digest
	if p.cfg.RecordInput {
		c.e.Input = r.Input
	}
	c.detail.record(r, p.cfg.RecordInput)
	// The memo is keyed by the whole input, in memory only: two inputs that
	// differ in a redacted value are not the same.
	p.work.evaluations.Add(1)
	res, err := c.live.Active.EvaluateKeyed(ctx, input, sha256.Sum256(raw), at)
	if err != nil {
		p.lg.Warn("decision: policy evaluation failed; denied", append([]any{"decision_id", c.d.ID, "version", c.d.PolicyVersion}, evalErrorAttrs(err)...)...)
	}
	v := policy.Judge(res, err, nil)
	c.d.Outcome, c.d.Reasons = v.Outcome, v.Reasons
	if v.Obligations != nil {
		c.d.Obligations = v.Obligations
	}
	if c.d.Outcome == policy.Allow {
		if c.newTaints, err = p.taint(ctx, c.d, c.pep.Name, req, tok, input); err != nil {
			c.deny(err.Error())
			c.d.Obligations = map[string]any{}
		}
	}
}

// record writes the decision's entry and returns the answer: a deny if the
// entry could not be written. When ctx is done the caller is gone: the
// answer would reach nobody, and nothing is recorded.
func (p *Pipeline) record(ctx context.Context, c *decision) Decision {
	d, e := c.d, c.e
	unrecorded := func(reason string) Decision {
		return Decision{ID: d.ID, Outcome: policy.Deny, Reasons: []string{reason},
			Obligations: map[string]any{}, PolicyVersion: d.PolicyVersion, AuditIndex: -1}
	}
	if ctx.Err() != nil {
		p.lg.Debug("decision: the caller went away; not recorded", "decision_id", d.ID, "pep", c.pep.Name)
		return unrecorded(ReasonCanceled)
	}
	e.Outcome, e.Reasons, e.PolicyVersion = string(d.Outcome), d.Reasons, d.PolicyVersion
	if len(d.Obligations) > 0 {
		c.detail["obligations"] = d.Obligations
	}
	if len(c.newTaints) > 0 {
		c.detail["taints_set"] = taintNames(c.newTaints)
	}
	if len(c.detail) > 0 {
		e.Detail, _ = json.Marshal(c.detail)
	}
	e.LatencyMicros = time.Since(c.start).Microseconds()
	idx, err := p.log.Append(ctx, e)
	switch {
	case err != nil && ctx.Err() != nil:
		return unrecorded(ReasonCanceled)
	case err != nil:
		p.lg.Error("decision: could not be recorded; denied", "decision_id", d.ID, "err", err)
		return unrecorded(ReasonAuditUnavailable)
	}
	d.AuditIndex = idx
	for _, t := range c.newTaints {
		p.cfg.Taints.Indexed(ctx, t, idx)
	}
	if c.live.Shadow != nil && c.input != nil {
		p.shadow.submit(shadowJob{engine: c.live.Shadow, input: c.input, sent: c.req.Resource.Attributes, at: c.now.Truncate(time.Second), id: d.ID, agent: e.Agent,
			action: c.req.Action, resource: e.Resource, active: d, pep: c.pep.Name})
	}
	return d
}

// DecideVerified decides as Decide does a request whose DPoP proof an
// enforcement point in this process has verified itself (a proof is good
// for one use, and the enforcement point needs its answer first). The
// token, the agent and its state are checked again here.
func (p *Pipeline) DecideVerified(ctx context.Context, pep Point, req *Request) (Decision, error) {
	r := *req
	r.proofChecked = true
	return p.Decide(ctx, pep, &r)
}

func (r *Request) validate() error {
	bad := func(field, why string) error { return fmt.Errorf("%w: %s: %s", ErrInvalidRequest, field, why) }
	switch {
	case r.Token == "":
		return bad("token", "required: the agent's access token")
	case r.Action == "" || len(r.Action) > 256:
		return bad("action", "required, at most 256 bytes")
	case r.Resource.Kind == "" || len(r.Resource.Kind) > 128:
		return bad("resource.kind", "required, at most 128 bytes")
	case len(r.Resource.ID) > 1024:
		return bad("resource.id", "at most 1024 bytes")
	case r.DPoP != "" && (r.HTM == "" || r.HTU == ""):
		return bad("dpop", "htm and htu, the method and URL the proof signs, are required with it")
	case len(r.Audience) > 1024:
		return bad("audience", "at most 1024 bytes")
	case len(r.Context.Session.ID) > 256:
		return bad("context.session.id", "at most 256 bytes")
	case len(r.Context.Session.Taints) > maxTaints:
		return bad("context.session.taints", fmt.Sprintf("at most %d", maxTaints))
	case r.Context.Source.IP != "":
		if _, err := netip.ParseAddr(r.Context.Source.IP); err != nil {
			return bad("context.source.ip", "not an IP address")
		}
	}
	for _, t := range r.Context.Session.Taints {
		if !validTaint(t) {
			return bad("context.session.taints", fmt.Sprintf("%q: 1 to 64 of a-z, 0-9, '_', '-', '.', ':'", t))
		}
	}
	return nil
}

const maxTaints = 32

func validTaint(t string) bool {
	if t == "" || len(t) > 64 {
		return false
	}
	for _, c := range []byte(t) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// args decodes the action's arguments, keeping numbers as written.
func (r *Request) args() (map[string]any, error) {
	if len(r.Args) == 0 || string(r.Args) == "null" {
		return map[string]any{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(r.Args))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, fmt.Errorf("%w: args: must be a JSON object", ErrInvalidRequest)
	}
	return m, nil
}

// authReason names why the agent was not authenticated.
func authReason(err error) string {
	var inactive *identity.AgentInactiveError
	switch {
	case errors.As(err, &inactive):
		return statusReason(inactive.Status)
	case errors.Is(err, identity.ErrStateUnavailable), errors.Is(err, identity.ErrReplayCacheIsFull):
		return ReasonStateUnavailable
	case errors.Is(err, identity.ErrProofRateExceeded):
		return ReasonDPoPRateExceeded
	case errors.Is(err, identity.ErrExpired):
		return ReasonTokenExpired
	case errors.Is(err, identity.ErrNotYetValid):
		return ReasonTokenNotYetValid
	case errors.Is(err, identity.ErrTokenRevoked), errors.Is(err, identity.ErrAgentRevoked):
		return ReasonTokenRevoked
	case errors.Is(err, identity.ErrUnknownAgent):
		return ReasonAgentUnknown
	case errors.Is(err, identity.ErrUnknownDomain):
		return ReasonTrustDomainUnknown
	case errors.Is(err, identity.ErrKeyNotBound):
		return ReasonKeyNotBound
	case errors.Is(err, identity.ErrDPoPRequired):
		return ReasonDPoPRequired
	case errors.Is(err, identity.ErrWrongAudience):
		return ReasonWrongAudience
	case errors.Is(err, identity.ErrDPoP), errors.Is(err, identity.ErrDPoPKeyMismatch), errors.Is(err, identity.ErrReplay):
		return ReasonDPoPInvalid
	}
	return ReasonTokenInvalid
}

func statusReason(s store.AgentStatus) string {
	if s == store.StatusQuarantined {
		return ReasonAgentQuarantined
	}
	return ReasonAgentDisabled
}

// newDecisionID makes a random id, "dec_" and 26 base32 characters.
func newDecisionID() string {
	var b [16]byte
	rand.Read(b[:])
	return "dec_" + idEncoding.EncodeToString(b[:])
}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

func orNow(f func() time.Time) func() time.Time {
	if f == nil {
		return time.Now
	}
	return f
}
