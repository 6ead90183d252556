package monitor

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/warden-run/warden/internal/audit"
)

// EventKind says what an event is to the model.
type EventKind uint8

// Kinds of event.
const (
	// EventDecision is a decision about an authenticated agent.
	EventDecision EventKind = iota + 1
	// EventAuthFailure is a refused credential that names an agent: a
	// token or DPoP proof an enforcement point refused, or a token request
	// the token endpoint refused.
	EventAuthFailure
	// EventTokenIssued is a token the token endpoint issued.
	EventTokenIssued
	// EventReleased is an operator setting the agent active again: its
	// score starts over (its baseline stays).
	EventReleased
	// EventUsage is what an enforcement point relayed to the agent over an
	// interval (Bytes).
	EventUsage
)

// Event is what the model learns from one audit entry. It is derived from
// the entry alone (Decode), so that the live model and one rebuilt from
// the log are the same.
type Event struct {
	Index int64
	Time  time.Time
	Kind  EventKind
	// Agent is the authenticated agent, or for an EventAuthFailure the
	// agent the refused credential names.
	Agent    string
	Action   string
	Resource string // "<kind>:<id>"
	Outcome  string
	Reasons  []string
	// From the recorded input, when the entry has it.
	SourceIP string
	Region   string
	Roles    []string
	Taints   []string
	ArgKeys  []string
	Egress   bool
	// ResourceDomain is the trust domain the resource's attributes name.
	ResourceDomain string
	// Bytes is what an EventUsage counts.
	Bytes int64

	denied bool // a refusal that says something of the agent (set by Apply)
}

// Denied reports whether the event is a refused decision.
func (e *Event) Denied() bool { return e.Kind == EventDecision && e.Outcome == "deny" }

// Refusals that say nothing of the agent's behaviour: the agent is
// already contained, Warden itself could not decide, or the agent was only
// held back by a rate limit or a clock.
var systemReasons = map[string]bool{
	"warden.agent_quarantined":         true,
	"warden.agent_disabled":            true,
	"warden.state_unavailable":         true,
	"warden.audit_unavailable":         true,
	"warden.dpop_rate_exceeded":        true,
	"warden.request_budget_exhausted":  true,
	"warden.token_expired":             true,
	"warden.token_not_yet_valid":       true,
	"warden.enforcement_point_unbound": true,
	"warden.no_active_policy":          true,
	"warden.policy_error":              true,
	"warden.policy_timeout":            true,
	"warden.policy_undefined":          true,
	"warden.policy_conflict":           true,
	"warden.policy_malformed_result":   true,
	// The shipped bundles' refusals for the agent's state or risk: a
	// restricted agent that keeps working, or one held back by its risk,
	// is not probing; counting them would feed the risk that caused them.
	"agent_quarantined":          true,
	"agent_disabled":             true,
	"agent_restricted_read_only": true,
	"risk_too_high":              true,
	"risk_read_only":             true,
	"risk_unknown":               true,
	// The token endpoint's causes (the second reason of a refusal).
	"rate_limited":       true,
	"dpop_rate_exceeded": true,
	"unavailable":        true,
	"agent_inactive":     true,
	"expired":            true,
	"not_yet_valid":      true,
}

// provenRefusals are the token endpoint's refusals of an assertion whose
// signature, by the agent's own key, checked out: a replayed assertion, or
// one for another audience. The agent they name did sign them (or its key
// leaked).
var provenRefusals = map[string]bool{"replayed": true, "wrong_audience": true}

// Decode makes the event of one stored entry; ok is false for entries the
// model does not learn from (policy changes, Warden's own responses,
// refusals that name no agent).
func Decode(e *audit.Entry) (Event, bool) {
	var in *recordedInput
	if len(e.Input) > 0 {
		in = new(recordedInput)
		if json.Unmarshal(e.Input, in) != nil {
			in = nil
		}
	}
	var res *resourceRef
	if json.Unmarshal(e.Resource, &res) != nil {
		res = nil
	}
	return decode(e, in, res)
}

// DecodeLeaf is Decode of an entry's stored bytes, read in one pass: the
// entry's fields and what the model needs of its input (audit.PeekEntry,
// then Decode, would read the input twice more). err is for bytes that
// are not an entry.
func DecodeLeaf(b []byte) (ev Event, ok bool, err error) {
	if ev, ok, err := scanLeaf(b); err == nil {
		return ev, ok, nil
	}
	return decodeLeaf(b)
}

// decodeLeaf is DecodeLeaf by encoding/json.
func decodeLeaf(b []byte) (ev Event, ok bool, err error) {
	var l struct {
		audit.Entry
		// These two hide the entry's own, as JSON's.
		Input    *recordedInput `json:"input"`
		Resource *resourceRef   `json:"resource"`
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return Event{}, false, fmt.Errorf("%w: %v", audit.ErrBadEntry, err)
	}
	ev, ok = decode(&l.Entry, l.Input, l.Resource)
	return ev, ok, nil
}

// decode is Decode with the entry's input and resource read.
func decode(e *audit.Entry, in *recordedInput, res *resourceRef) (Event, bool) {
	ev := Event{Index: e.Index, Time: e.Time, Action: e.Action, Outcome: e.Outcome, Reasons: e.Reasons}
	switch e.Kind {
	case audit.KindDecision:
		if e.Agent != "" {
			ev.Kind, ev.Agent = EventDecision, e.Agent
			ev.Resource = res.key()
			fromInput(&ev, in)
			return ev, true
		}
		return authFailure(ev, e, in, res)
	case audit.KindToken:
		if e.Outcome == "deny" && !slices.ContainsFunc(e.Reasons, func(r string) bool { return provenRefusals[r] }) {
			// The agent an assertion names is known only once its
			// signature checks out: anyone can name any agent, and must not
			// raise its risk by doing so.
			return Event{}, false
		}
		switch e.Outcome {
		case "allow":
			ev.Kind, ev.Agent = EventTokenIssued, e.Agent
			var d struct {
				Source string `json:"source"`
			}
			if json.Unmarshal(e.Detail, &d) == nil {
				ev.SourceIP = d.Source
			}
			return ev, ev.Agent != ""
		case "deny":
			return authFailure(ev, e, in, res)
		}
	case audit.KindUsage:
		var d struct {
			Bytes int64 `json:"bytes"`
		}
		if e.Agent == "" || json.Unmarshal(e.Detail, &d) != nil || d.Bytes < 0 {
			return Event{}, false
		}
		ev.Kind, ev.Agent, ev.Bytes = EventUsage, e.Agent, d.Bytes
		return ev, true
	case audit.KindAdmin:
		if e.Action == "agent.status" && e.Target != "" {
			var d struct {
				Status string `json:"status"`
			}
			if json.Unmarshal(e.Detail, &d) == nil && d.Status == "active" {
				ev.Kind, ev.Agent = EventReleased, e.Target
				return ev, true
			}
		}
	}
	return Event{}, false
}

// authFailure is the event of a refusal that names an agent.
func authFailure(ev Event, e *audit.Entry, in *recordedInput, res *resourceRef) (Event, bool) {
	var d struct {
		Claimed json.RawMessage `json:"claimed_agent"`
		Source  string          `json:"source"`
	}
	if json.Unmarshal(e.Detail, &d) != nil || len(d.Claimed) == 0 {
		return Event{}, false
	}
	// A decision names {"id": ...}; the token endpoint the id itself.
	var claimed struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(d.Claimed, &claimed) != nil {
		if json.Unmarshal(d.Claimed, &claimed.ID) != nil {
			return Event{}, false
		}
	}
	if claimed.ID == "" {
		return Event{}, false
	}
	ev.Kind, ev.Agent, ev.SourceIP = EventAuthFailure, claimed.ID, d.Source
	if e.Kind == audit.KindDecision {
		ev.Resource = res.key()
		fromInput(&ev, in)
	}
	return ev, true
}

// resourceRef is an entry's resource.
type resourceRef struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
}

func (r *resourceRef) key() string {
	if r == nil {
		return ""
	}
	return r.Kind + ":" + r.ID
}

// recordedInput is what the model needs of a recorded policy input.
type recordedInput struct {
	Agent struct {
		Roles []string `json:"roles"`
	} `json:"agent"`
	// Args is an object, or the string an omitted one is recorded as
	// (arguments over the record's limit): the agent chooses which.
	Args json.RawMessage `json:"args"`
	// argKeys are Args' names, sorted, when argsRead (scanLeaf reads them
	// and leaves Args empty).
	argKeys  []string
	argsRead bool

	Resource struct {
		// Attributes are kept as JSON: any value an enforcement point
		// sends (a number out of float64's range, say) reads, so that no
		// attribute can hide the rest of the input from the model.
		Attributes map[string]json.RawMessage `json:"attributes"`
	} `json:"resource"`
	Context struct {
		Source struct {
			IP     string `json:"ip"`
			Region string `json:"region"`
		} `json:"source"`
		Session struct {
			Taints []string `json:"taints"`
		} `json:"session"`
		Delegation []string `json:"delegation"`
	} `json:"context"`
}

// fromInput reads what the model needs from a recorded policy input (nil
// when the entry has none, or none that reads).
func fromInput(ev *Event, in *recordedInput) {
	if in == nil {
		return
	}
	ev.Roles = in.Agent.Roles
	if len(in.Context.Delegation) > 0 && ev.Kind == EventDecision {
		// A delegated token's subject is who the action is for; its
		// current actor is who behaves: the model watches the actor.
		ev.Agent = in.Context.Delegation[0]
	}
	ev.SourceIP, ev.Region = in.Context.Source.IP, in.Context.Source.Region
	ev.Taints = in.Context.Session.Taints
	if in.argsRead {
		if len(in.argKeys) > 0 {
			ev.ArgKeys = in.argKeys
		}
	} else {
		var args map[string]json.RawMessage
		if json.Unmarshal(in.Args, &args) == nil {
			for k := range args {
				ev.ArgKeys = append(ev.ArgKeys, k)
			}
		}
		slices.Sort(ev.ArgKeys)
	}
	a := in.Resource.Attributes
	ev.Egress = string(a["egress"]) == "true" || string(a["external"]) == "true"
	if json.Unmarshal(a["trust_domain"], &ev.ResourceDomain) != nil {
		ev.ResourceDomain = ""
	}
}

// network is the address range a source is counted in: its /24 (IPv4) or
// /48 (IPv6); "" for none. Sources within one such range are one network.
func network(ip string) string {
	a, err := netip.ParseAddr(strings.TrimSpace(ip))
	if err != nil {
		return ""
	}
	a = a.Unmap()
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p.String()
}
