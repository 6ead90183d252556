// Package decide is Warden's decision pipeline: it authenticates the agent
// behind an action, enriches the policy input, evaluates the live policy,
// records the decision in the audit log and only then answers.
package decide

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/warden-run/warden/internal/audit"
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

// Config configures a Pipeline.
type Config struct {
	// Regions maps region names to the address ranges they cover; the
	// input's context.source.region is the first that holds the source IP.
	Regions map[string][]netip.Prefix
	// RecordInput puts each decision's input in its audit entry (its digest
	// is always there); Redact lists input paths ("args.card.number")
	// replaced by "[redacted]" in the recorded copy.
	RecordInput bool
	Redact      []string
	// ShadowQueue bounds the shadow evaluations waiting to run; when it is
	// full, shadow evaluations are dropped (and counted), never decisions.
	ShadowQueue int
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
	redact   [][]string
	verifier *identity.Verifier
	view     *identity.TrustView
	policies *policy.Registry
	log      *audit.Log
	lg       *slog.Logger
	now      func() time.Time
	shadow   *shadowRunner
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
	for _, r := range cfg.Redact {
		path, err := parsePath(r)
		if err != nil {
			return nil, fmt.Errorf("decide: redact %q: %w", r, err)
		}
		p.redact = append(p.redact, path)
	}
	if cfg.ShadowQueue <= 0 {
		cfg.ShadowQueue = 1024
	}
	p.shadow = startShadow(cfg.ShadowQueue, log, p.lg)
	return p, nil
}

// Close stops the shadow evaluator after the queued evaluations.
func (p *Pipeline) Close() { p.shadow.close() }

// ShadowStats reports the shadow evaluations so far.
func (p *Pipeline) ShadowStats() ShadowStats { return p.shadow.stats() }

// Decide decides one request from the enforcement point named pep. Every
// path that is not a clean allow is a deny with a reason; the decision is
// in the audit log before it is returned, and if it cannot be recorded it
// is a deny. Only a malformed request is an error (ErrInvalidRequest): it
// is neither decided nor recorded.
func (p *Pipeline) Decide(ctx context.Context, pep string, req *Request) (Decision, error) {
	start := time.Now()
	if err := req.validate(); err != nil {
		return Decision{}, err
	}
	args, err := req.args()
	if err != nil {
		return Decision{}, err
	}
	now := p.now().UTC()
	live := p.policies.Live()
	d := Decision{ID: newDecisionID(), Reasons: []string{}, Obligations: map[string]any{}, AuditIndex: -1}
	if live.Active != nil {
		d.PolicyVersion = live.Active.Version()
	}
	e := &audit.Entry{Kind: audit.KindDecision, Time: now, DecisionID: d.ID, Action: req.Action, EnforcementPoint: pep}
	e.Resource, _ = json.Marshal(map[string]string{"kind": req.Resource.Kind, "id": req.Resource.ID})

	var input map[string]any
	var tok *identity.Token
	var newTaints []store.Taint
	if req.proofChecked {
		tok, err = p.verifier.Verify(ctx, req.Token)
	} else {
		tok, err = p.verifier.VerifyRequest(ctx, identity.Request{Token: req.Token, DPoP: req.DPoP, Method: req.HTM, URL: req.HTU})
	}
	switch {
	case err != nil:
		d.Outcome, d.Reasons = policy.Deny, []string{authReason(err)}
		if t, ierr := p.verifier.Inspect(req.Token); ierr == nil {
			e.Agent = t.Subject // signed by the issuer, though refused: worth recording
		}
		p.lg.Info("decision: agent not authenticated", "decision_id", d.ID, "pep", pep, "reason", d.Reasons[0], "err", err)
	default:
		e.Agent = tok.Subject
		rec, ok := p.view.Agent(tok.Subject)
		switch {
		case req.Audience != "" && !tok.Audience.Contains(req.Audience):
			d.Outcome, d.Reasons = policy.Deny, []string{ReasonWrongAudience}
		case !ok:
			d.Outcome, d.Reasons = policy.Deny, []string{ReasonAgentUnknown}
		case !rec.Status.MayHoldTokens():
			d.Outcome, d.Reasons = policy.Deny, []string{statusReason(rec.Status)}
		case live.Active == nil:
			d.Outcome, d.Reasons = policy.Deny, []string{policy.ReasonNoPolicy}
		default:
			// The policy's clock is the decision's second: a decision is a
			// function of its input, which the engine can then reuse.
			at := now.Truncate(time.Second)
			held, err := p.heldTaints(tok)
			if err != nil {
				p.lg.Warn("decision: the agent's taints are unknown; denied", "decision_id", d.ID, "err", err)
				d.Outcome, d.Reasons = policy.Deny, []string{ReasonStateUnavailable}
				break
			}
			input = p.input(req, args, tok, rec, live.Active, at, held)
			raw, err := audit.AppendCanonical(nil, input)
			if err != nil {
				// Cannot happen with JSON-shaped input; fail closed all the same.
				d.Outcome, d.Reasons = policy.Deny, []string{policy.ReasonError}
				input = nil
				break
			}
			sum := sha256.Sum256(raw)
			e.InputDigest = "sha256:" + hex.EncodeToString(sum[:])
			if p.cfg.RecordInput {
				e.Input = p.recordedInput(input, raw)
			}
			res, err := live.Active.EvaluateKeyed(ctx, input, sum, at)
			if err != nil {
				p.lg.Warn("decision: policy evaluation failed; denied", "decision_id", d.ID, "version", d.PolicyVersion, "err", err)
			}
			v := policy.Judge(res, err, nil)
			d.Outcome, d.Reasons = v.Outcome, v.Reasons
			if v.Obligations != nil {
				d.Obligations = v.Obligations
			}
			if d.Outcome == policy.Allow {
				newTaints, err = p.taint(ctx, d, pep, req, tok, input)
				if err != nil {
					d.Outcome, d.Reasons = policy.Deny, []string{err.Error()}
				}
			}
		}
	}
	e.Outcome, e.Reasons, e.PolicyVersion = string(d.Outcome), d.Reasons, d.PolicyVersion
	detail := map[string]any{}
	if len(d.Obligations) > 0 {
		detail["obligations"] = d.Obligations
	}
	if len(newTaints) > 0 {
		detail["taints_set"] = taintNames(newTaints)
	}
	if len(detail) > 0 {
		e.Detail, _ = json.Marshal(detail)
	}
	e.LatencyMicros = time.Since(start).Microseconds()
	idx, err := p.log.Append(ctx, e)
	if err != nil {
		p.lg.Error("decision: could not be recorded; denied", "decision_id", d.ID, "err", err)
		return Decision{ID: d.ID, Outcome: policy.Deny, Reasons: []string{ReasonAuditUnavailable},
			Obligations: map[string]any{}, PolicyVersion: d.PolicyVersion, AuditIndex: -1}, nil
	}
	d.AuditIndex = idx
	for _, t := range newTaints {
		p.cfg.Taints.Indexed(ctx, t, idx)
	}
	if live.Shadow != nil && input != nil {
		p.shadow.submit(shadowJob{engine: live.Shadow, input: input, sent: req.Resource.Attributes, at: now.Truncate(time.Second), id: d.ID, agent: e.Agent,
			action: req.Action, resource: e.Resource, active: d, pep: pep})
	}
	return d, nil
}

// DecideVerified decides as Decide does a request whose DPoP proof an
// enforcement point in this process has verified itself (a proof is good
// for one use, and the enforcement point needs its answer first). The
// token, the agent and its state are checked again here.
func (p *Pipeline) DecideVerified(ctx context.Context, pep string, req *Request) (Decision, error) {
	r := *req
	r.proofChecked = true
	return p.Decide(ctx, pep, &r)
}

// MayAllow says whether the policy could allow req with some arguments
// (req.Args are not used): an enforcement point hides from an agent what
// it could never do. It records nothing and decides nothing; any failure
// (token, agent, policy) is false.
func (p *Pipeline) MayAllow(ctx context.Context, req *Request) bool {
	if err := req.validate(); err != nil {
		return false
	}
	live := p.policies.Live()
	if live.Active == nil {
		return false
	}
	tok, err := p.verifier.Verify(ctx, req.Token)
	if err != nil || req.Audience != "" && !tok.Audience.Contains(req.Audience) {
		return false
	}
	rec, ok := p.view.Agent(tok.Subject)
	if !ok || !rec.Status.MayHoldTokens() {
		return false
	}
	at := p.now().UTC().Truncate(time.Second)
	held, err := p.heldTaints(tok)
	if err != nil {
		return false
	}
	may, err := live.Active.MayAllow(ctx, p.input(req, map[string]any{}, tok, rec, live.Active, at, held), at)
	if err != nil {
		p.lg.Warn("policy: could not tell whether an action may be allowed; hidden", "action", req.Action, "resource", req.Resource.ID, "err", err)
	}
	return may
}

// DecideBatch decides every request as Decide does, concurrently, so that
// their audit entries share syncs. A malformed request gets its error in
// its place; the others are decided.
func (p *Pipeline) DecideBatch(ctx context.Context, pep string, reqs []Request) ([]Decision, []error) {
	out := make([]Decision, len(reqs))
	errs := make([]error, len(reqs))
	done := make(chan struct{}, len(reqs))
	for i := range reqs {
		go func() {
			out[i], errs[i] = p.Decide(ctx, pep, &reqs[i])
			done <- struct{}{}
		}()
	}
	for range reqs {
		<-done
	}
	return out, errs
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
