// Package decide is Warden's decision pipeline: it authenticates the agent
// behind an action, enriches the policy input, evaluates the live policy,
// records the decision in the audit log and only then answers.
package decide

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/decide/record"
	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
	"github.com/warden-run/warden/internal/tracing"
	"github.com/warden-run/warden/internal/wire"
)

// ErrInvalidRequest means a decision request is malformed; it was neither
// decided nor recorded.
var ErrInvalidRequest = wire.ErrInvalidRequest

// The decision API's types are the wire package's, which enforcement
// points share.
type (
	// Request asks whether an agent may perform an action.
	Request = wire.Request
	// Resource is what an action is performed on.
	Resource = wire.Resource
	// RequestContext is what the enforcement point knows of the request.
	RequestContext = wire.RequestContext
	// Source is where the agent's request came from.
	Source = wire.Source
	// Session is the agent's session at the enforcement point.
	Session = wire.Session
	// Decision is the answer, recorded when it is returned.
	Decision = wire.Decision
)

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
	ReasonDPoPRateExceeded = wire.ReasonDPoPRateExceeded
)

// recordTimeout bounds the recording of a decision whose caller went away.
const recordTimeout = 10 * time.Second

// A reason for decisions cut short: a batch's request budget was spent
// before the request's turn.
const (
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
	// RestrictedRoles, when not empty, are the only roles a restricted
	// agent keeps in policy's input.
	RestrictedRoles []string
	// Risk, when set, answers each agent's live risk (the monitor); every
	// decision's input carries it as context.risk.
	Risk RiskSource
	// Approvals, when set, holds the actions policy asks approvals for:
	// a pending decision opens (or finds) the request for exactly its
	// action, and the first identical decision after it is approved uses
	// it up and is allowed. Without it, such decisions stay pending.
	Approvals ApprovalGate
	// Grants, when set, answers the agents' task grants in force; every
	// decision's input carries those of its agent and task as
	// context.grants.
	Grants GrantSource
	// Observer, when set, is told of every decision once it is recorded
	// (or refused for want of a record): Warden's metrics.
	Observer Observer
	Logger   *slog.Logger
	Now      func() time.Time
}

// Observer is told of each decision: where it was asked, its outcome and
// reasons, and how long it took, its durable entry included.
type Observer interface {
	Decided(pep, outcome string, reasons []string, took time.Duration)
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
	parts    parts
	// evalFailed and hidden sample their log lines (the decision's own
	// entry says why it was denied).
	evalFailed, hidden sampled
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
	p.parts = newParts()
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
	return p.decide(ctx, pep, req, false)
}

func (p *Pipeline) decide(ctx context.Context, pep Point, req *Request, proofChecked bool) (Decision, error) {
	ctx, span := tracer.Start(ctx, "warden.decide")
	defer span.End()
	c, err := p.prepare(pep, req)
	if err != nil {
		span.SetStatus(codes.Error, "malformed request")
		return Decision{}, err
	}
	c.proofChecked = proofChecked
	p.conclude(ctx, c)
	d := p.record(ctx, c)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("warden.decision_id", d.ID), attribute.String("warden.outcome", string(d.Outcome)),
			attribute.StringSlice("warden.reasons", d.Reasons), attribute.String("warden.enforcement_point", pep.Name),
			attribute.String("warden.agent", c.e.Agent), attribute.String("warden.action", req.Action),
			attribute.String("warden.resource", req.Resource.ID), attribute.String("warden.policy_version", d.PolicyVersion),
			attribute.Int64("warden.audit_index", d.AuditIndex))
	}
	return d, nil
}

// tracer makes the decisions' spans (no-ops unless tracing is on).
var tracer = tracing.Tracer()

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
	// parts are the parts of input already converted for the engine.
	parts []policy.Part
	// newTaints were set by this decision (an allowed read that taints).
	newTaints []store.Taint
	// proofChecked says the enforcement point, in this process, verified
	// the DPoP proof itself (DecideVerified).
	proofChecked bool
}

// prepare checks a request and begins its decision; a malformed request
// is an error (ErrInvalidRequest).
func (p *Pipeline) prepare(pep Point, req *Request) (*decision, error) {
	start := time.Now()
	if err := req.Validate(); err != nil {
		return nil, err
	}
	args, err := req.DecodeArgs()
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
	c.e.Resource = resourceJSON(req.Resource)
	return c
}

// resourceJSON is an entry's resource, {"id":...,"kind":...}, in canonical
// form.
func resourceJSON(r Resource) json.RawMessage {
	b := make([]byte, 0, len(r.ID)+len(r.Kind)+24)
	b = append(b, `{"id":`...)
	b, _ = audit.AppendCanonical(b, r.ID) // a string always encodes
	b = append(b, `,"kind":`...)
	b, _ = audit.AppendCanonical(b, r.Kind)
	return append(b, '}')
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
	if c.proofChecked {
		tok, err = p.verifier.Verify(ctx, req.Token)
	} else {
		tok, err = p.verifier.VerifyRequest(ctx, identity.Request{Token: req.Token, DPoP: req.DPoP, Method: req.HTM, URL: req.HTU})
	}
	if err != nil {
		c.deny(authReason(err))
		if t, ierr := p.verifier.Inspect(req.Token); ierr == nil {
			c.claim(presenter(t)) // signed by the issuer, though refused: worth recording as such
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
		return tok, p.chainStatus(tok, rec), true
	}
	c.claim(presenter(tok))
	return nil, store.Agent{}, false
}

// presenter is the agent a token is issued to, the one that presents it:
// the subject, or a delegated token's current actor. A refusal is charged
// to it: a delegate's failures must not raise the risk of the agent that
// delegated to it.
func presenter(t *identity.Token) string {
	if len(t.Chain) > 0 {
		return t.Chain[0].String()
	}
	return t.Subject
}

// chainStatus is rec with the most restrictive status of the agents in a
// delegated token: a restricted agent acting for an active one is
// restricted (policy sees agent.status), or a restricted agent would
// write again through a token delegated to it.
func (p *Pipeline) chainStatus(tok *identity.Token, rec store.Agent) store.Agent {
	if rec.Status == store.StatusRestricted {
		return rec
	}
	for _, id := range tok.Chain {
		if actor, ok := p.view.Agent(id.String()); ok && actor.Status == store.StatusRestricted {
			rec.Status = store.StatusRestricted
			return rec
		}
	}
	return rec
}

// claim records subject as the agent a refused token was presented by.
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
	input, parts := p.input(req, args, tok, rec, c.live, at, held)
	c.parts = parts
	v, ok := p.judge(ctx, c, input, at, nil)
	if !ok {
		return
	}
	if c.d.Outcome == policy.PendingApproval && p.cfg.Approvals != nil {
		input = p.gate(ctx, c, req, args, tok, rec, input, at, *v.Approval)
	}
	if c.d.Outcome == policy.Allow {
		if c.newTaints, err = p.taint(ctx, c.d, c.pep.Name, req, tok, input); err != nil {
			c.deny(err.Error())
			c.d.Obligations = map[string]any{}
		}
	}
}

// judge records input as the decision's, evaluates the live policy on it
// and makes its verdict c's (approvals, when given, counted toward a
// require_approvals obligation). ok is false when the input could not be
// recorded (c is then a deny).
func (p *Pipeline) judge(ctx context.Context, c *decision, input map[string]any, at time.Time, approvals []any) (policy.Verdict, bool) {
	raw, err := audit.AppendCanonical(nil, input)
	if err != nil {
		// Cannot happen with JSON-shaped input; fail closed all the same.
		c.deny(policy.ReasonError)
		return policy.Verdict{}, false
	}
	r, err := p.recorder.Record(input, raw)
	if err != nil {
		c.deny(policy.ReasonError)
		return policy.Verdict{}, false
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
	res, err := c.live.Active.EvaluateKeyed(ctx, input, c.parts, sha256.Sum256(raw), at)
	if err != nil {
		if ok, held := p.evalFailed.due(); ok {
			p.lg.Warn("decision: policy evaluation failed; denied", append([]any{"decision_id", c.d.ID, "version", c.d.PolicyVersion,
				"failed_since_last_line", held}, evalErrorAttrs(err)...)...)
		}
	}
	v := policy.Judge(res, err, approvals)
	c.d.Outcome, c.d.Reasons, c.d.Obligations = v.Outcome, v.Reasons, map[string]any{}
	if v.Obligations != nil {
		c.d.Obligations = v.Obligations
	}
	return v, true
}

// record writes the decision's entry and returns the answer: a deny if the
// entry could not be written. The entry is written also when the caller is
// gone (see below).
func (p *Pipeline) record(ctx context.Context, c *decision) Decision {
	d, e := c.d, c.e
	unrecorded := func(reason string) Decision {
		d := Decision{ID: d.ID, Outcome: policy.Deny, Reasons: []string{reason},
			Obligations: map[string]any{}, PolicyVersion: d.PolicyVersion, AuditIndex: -1}
		p.observe(c, d)
		return d
	}
	// A decision made is recorded, also when its caller went away
	// meanwhile: an agent that hangs up after each denied attempt must
	// not leave no trace, and a taint it set must have its entry.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	e.Outcome, e.Reasons, e.PolicyVersion = string(d.Outcome), d.Reasons, d.PolicyVersion
	if len(d.Obligations) > 0 {
		c.detail["obligations"] = d.Obligations
	}
	if len(c.newTaints) > 0 {
		c.detail["taints_set"] = taintNames(c.newTaints)
	}
	if p := c.req.Context.Provenance; p != nil {
		// The decision's lineage: the reads its arguments came from, and
		// the untrusted reads before it, by their audit indexes.
		c.detail["lineage"] = lineage(p)
	}
	if len(c.detail) > 0 {
		e.Detail, _ = json.Marshal(c.detail)
	}
	e.LatencyMicros = time.Since(c.start).Microseconds()
	idx, err := p.log.Append(ctx, e)
	if err != nil {
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
	p.observe(c, d)
	return d
}

// observe tells the observer of d.
func (p *Pipeline) observe(c *decision, d Decision) {
	if o := p.cfg.Observer; o != nil {
		o.Decided(c.pep.Name, string(d.Outcome), d.Reasons, time.Since(c.start))
	}
}

// DecideVerified decides as Decide does a request whose DPoP proof an
// enforcement point in this process has verified itself (a proof is good
// for one use, and the enforcement point needs its answer first). The
// token, the agent and its state are checked again here.
func (p *Pipeline) DecideVerified(ctx context.Context, pep Point, req *Request) (Decision, error) {
	return p.decide(ctx, pep, req, true)
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

func lineage(p *wire.Provenance) map[string]any {
	var reads []int64
	for _, o := range p.Args {
		for _, r := range o.Reads {
			if !slices.Contains(reads, r) {
				reads = append(reads, r)
			}
		}
	}
	slices.Sort(reads)
	untrusted := slices.Clone(p.UntrustedReads)
	slices.Sort(untrusted)
	return map[string]any{"reads": orEmpty(reads), "untrusted_reads": orEmpty(untrusted), "evicted": p.Evicted}
}

func orEmpty(s []int64) []int64 {
	if s == nil {
		return []int64{}
	}
	return s
}
