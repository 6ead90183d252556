package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// ErrInvalidRequest means a decision request is malformed; it is neither
// decided nor recorded.
var ErrInvalidRequest = errors.New("invalid decision request")

// Request asks whether an agent may perform an action (POST /v1/decide).
// The enforcement point that sends it has authenticated itself; the agent
// is known only by its token.
type Request struct {
	// Token is the agent's access token, as it presented it.
	Token string `json:"token"`
	// DPoP is the agent's proof of possession, with the method and URL of
	// the request it signed. Required when the agent's trust domain says so.
	DPoP string `json:"dpop,omitempty"`
	HTM  string `json:"htm,omitempty"`
	HTU  string `json:"htu,omitempty"`
	// Audience, when set, is the resource the enforcement point serves:
	// the token must have been issued for it, and it must be the one the
	// enforcement point was registered with.
	Audience string `json:"audience,omitempty"`
	// Action is what the agent does, such as "tools/call".
	Action   string   `json:"action"`
	Resource Resource `json:"resource"`
	// Args are the action's arguments: a JSON object, or absent.
	Args    json.RawMessage `json:"args,omitempty"`
	Context RequestContext  `json:"context"`
}

// Resource is what an action is performed on. The policy's catalog wins
// the attributes it names, except that restrictions are kept.
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
	// Provenance, from an enforcement point that follows what the agent
	// reads, says where each argument came from.
	Provenance *Provenance `json:"provenance,omitempty"`
}

// Provenance is where an action's arguments came from: for each argument
// (a leaf of args, by dotted path), the sources its values were read from.
type Provenance struct {
	Args map[string]ArgOrigin `json:"args"`
	// UntrustedReads are the audit indexes of the untrusted results the
	// agent read (in the enforcement point's memory of it).
	UntrustedReads []int64 `json:"untrusted_reads"`
	// Evicted counts the reads forgotten to keep memory bounded.
	Evicted int `json:"evicted"`
}

// ArgOrigin is where one argument's values came from.
type ArgOrigin struct {
	// Sources are user (the user's own request), trusted, untrusted (a
	// result of a trusted or untrusted source), unknown (a value seen in
	// no read).
	Sources []string `json:"sources"`
	// OnlyUntrusted: some value of the argument was seen only in untrusted
	// results.
	OnlyUntrusted bool     `json:"only_untrusted"`
	Values        int      `json:"values"`
	Upstreams     []string `json:"upstreams"`
	Tools         []string `json:"tools"`
	// Reads are the audit indexes of the reads its values were seen in.
	Reads []int64 `json:"reads"`
}

// Source is where the agent's request came from.
type Source struct {
	// IP is the agent's address as the enforcement point saw it. The
	// region is derived from it by the configured ranges.
	IP string `json:"ip,omitempty"`
}

// Session identifies the agent's session at the enforcement point.
type Session struct {
	ID string `json:"id,omitempty"`
	// Taints are added to those Warden keeps for the agent: an
	// enforcement point can add to what policy sees, never remove.
	Taints []string `json:"taints,omitempty"`
}

// Outcome is what a decision tells the enforcement point to do.
type Outcome string

// Outcomes.
const (
	Allow Outcome = "allow"
	Deny  Outcome = "deny"
	// PendingApproval: the policy allows the action once enough people have
	// approved it (obligation require_approvals); until then it must not run.
	PendingApproval Outcome = "pending_approval"
)

// Decision is the answer. It has been recorded when it is returned: its
// AuditIndex is its entry in the log (-1 in async audit mode, where the
// entry is queued, or when recording failed and the outcome is deny).
type Decision struct {
	ID            string         `json:"decision_id"`
	Outcome       Outcome        `json:"outcome"`
	Reasons       []string       `json:"reasons"`
	Obligations   map[string]any `json:"obligations"`
	PolicyVersion string         `json:"policy_version"`
	AuditIndex    int64          `json:"audit_index"`
	// Approval is the approval request a pending decision waits for, or
	// the one an allowed decision used up.
	Approval *ApprovalRef `json:"approval,omitempty"`
}

// ApprovalRef is an approval request as a decision names it. The agent's
// next call with exactly the same action, resource and arguments runs once
// the request is approved, and only once.
type ApprovalRef struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	ExpiresAt string `json:"expires_at"`
	// Approvals is how many approvers have approved; Needed how many the
	// policy asks for.
	Approvals int `json:"approvals"`
	Needed    int `json:"needed"`
}

// Limits of a request.
const (
	maxAction    = 256
	maxKind      = 128
	maxID        = 1024
	maxAudience  = 1024
	maxSessionID = 256
	maxTaints    = 32
)

// Validate says what is wrong with r, wrapping ErrInvalidRequest.
func (r *Request) Validate() error {
	bad := func(field, why string) error { return fmt.Errorf("%w: %s: %s", ErrInvalidRequest, field, why) }
	switch {
	case r.Token == "":
		return bad("token", "required: the agent's access token")
	case r.Action == "" || len(r.Action) > maxAction:
		return bad("action", "required, at most 256 bytes")
	case r.Resource.Kind == "" || len(r.Resource.Kind) > maxKind:
		return bad("resource.kind", "required, at most 128 bytes")
	case len(r.Resource.ID) > maxID:
		return bad("resource.id", "at most 1024 bytes")
	case r.DPoP != "" && (r.HTM == "" || r.HTU == ""):
		return bad("dpop", "htm and htu, the method and URL the proof signs, are required with it")
	case len(r.Audience) > maxAudience:
		return bad("audience", "at most 1024 bytes")
	case len(r.Context.Session.ID) > maxSessionID:
		return bad("context.session.id", "at most 256 bytes")
	case len(r.Context.Session.Taints) > maxTaints:
		return bad("context.session.taints", fmt.Sprintf("at most %d", maxTaints))
	case r.Context.Source.IP != "":
		if _, err := netip.ParseAddr(r.Context.Source.IP); err != nil {
			return bad("context.source.ip", "not an IP address")
		}
	}
	for _, t := range r.Context.Session.Taints {
		if !ValidTaint(t) {
			return bad("context.session.taints", fmt.Sprintf("%q: 1 to 64 of a-z, 0-9, '_', '-', '.', ':'", t))
		}
	}
	if p := r.Context.Provenance; p != nil {
		if err := p.check(); err != nil {
			return bad("context.provenance", err.Error())
		}
	}
	return nil
}

// Bounds of a provenance.
const (
	maxProvenanceArgs  = 256
	maxProvenanceItems = 64
	maxProvenancePath  = 256
)

var provenanceSources = []string{"user", "trusted", "untrusted", "unknown"}

func (p *Provenance) check() error {
	if len(p.Args) > maxProvenanceArgs || len(p.UntrustedReads) > 4*maxProvenanceItems || p.Evicted < 0 {
		return fmt.Errorf("at most %d arguments and %d untrusted reads", maxProvenanceArgs, 4*maxProvenanceItems)
	}
	for path, o := range p.Args {
		switch {
		case path == "" || len(path) > maxProvenancePath:
			return fmt.Errorf("argument path %q: 1 to %d bytes", path, maxProvenancePath)
		case len(o.Sources) > len(provenanceSources) || len(o.Upstreams) > maxProvenanceItems || len(o.Tools) > maxProvenanceItems || len(o.Reads) > maxProvenanceItems:
			return fmt.Errorf("argument %q: too many sources, upstreams, tools or reads", path)
		}
		for _, s := range o.Sources {
			if !slices.Contains(provenanceSources, s) {
				return fmt.Errorf("argument %q: source %q: want user, trusted, untrusted or unknown", path, s)
			}
		}
	}
	return nil
}

// ValidTaint says whether t can name a taint: 1 to 64 of a-z, 0-9, '_',
// '-', '.', ':'.
func ValidTaint(t string) bool {
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

// DecodeArgs decodes the action's arguments, keeping numbers as written;
// absent or null is an empty object.
func (r *Request) DecodeArgs() (map[string]any, error) {
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
