package decide

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
	"github.com/warden-run/warden/internal/wire"
)

// Taints keeps what agents' contexts hold that they must not trust (see
// package taint). The pipeline reads an agent's taints into every
// decision's input and sets them when it allows a read that taints.
type Taints interface {
	// Held returns the taints a decision of agent, under task, sees.
	Held(agent, task string) ([]store.Taint, error)
	// Record sets a taint before the read that sets it goes ahead, and
	// reports whether it is new.
	Record(ctx context.Context, t store.Taint) (bool, error)
	// Indexed records the audit index of the decision that set a taint.
	Indexed(ctx context.Context, t store.Taint, index int64)
}

// TrustUntrusted is the value of a resource's trust attribute (from the
// catalog or the enforcement point) whose reads taint the agent.
const TrustUntrusted = "untrusted"

// taintUntrusted is the taint such a read sets.
const taintUntrusted = "untrusted_content"

// taintHolder is whose taints a token's reads set: the agent whose
// context holds what it read, the presenter (for a delegated token, the
// current actor), within the task the token was bound to.
func taintHolder(tok *identity.Token) (agent, task string) {
	return tok.Presenter.String(), tok.Task
}

// heldTaints are the taints a token's decisions see: the holder's (within
// its task), and every taint of every other agent in the token (its
// subject and earlier actors), whose instructions reach the holder through
// the delegation: a tainted agent cannot have a clean one act for it. None
// without a registry.
func (p *Pipeline) heldTaints(tok *identity.Token) ([]store.Taint, error) {
	if p.cfg.Taints == nil {
		return nil, nil
	}
	agent, task := taintHolder(tok)
	held, err := p.cfg.Taints.Held(agent, task)
	if err != nil || len(tok.Chain) == 0 {
		return held, err
	}
	others := []string{tok.Subject}
	for _, a := range tok.Chain[1:] {
		others = append(others, a.String())
	}
	for _, other := range others {
		if other == agent {
			continue
		}
		more, err := p.cfg.Taints.Held(other, "")
		if err != nil {
			return nil, err
		}
		held = append(held, more...)
	}
	return held, nil
}

// sessionInput is the input's context.session: the enforcement point's
// session id, the task the token is bound to, and the taints, by name,
// with where each came from. Taints
// the enforcement point reports are added (it can only narrow).
func sessionInput(s Session, task string, held []store.Taint) map[string]any {
	names := slices.Clone(s.Taints)
	sources := make([]any, 0, len(held))
	for _, t := range held {
		names = append(names, t.Name)
		src := map[string]any{
			"agent":             t.AgentID,
			"taint":             t.Name,
			"decision_id":       t.DecisionID,
			"audit_index":       t.AuditIndex,
			"enforcement_point": t.EnforcementPoint,
			"action":            t.Action,
			"resource":          map[string]any{"kind": t.ResourceKind, "id": t.ResourceID},
			"since":             t.CreatedAt.UTC().Format(time.RFC3339),
			"last_read":         t.LastReadAt.UTC().Format(time.RFC3339),
		}
		if t.Task != "" {
			src["task"] = t.Task
		}
		sources = append(sources, src)
	}
	return map[string]any{"id": s.ID, "task": task, "taints": taints(names), "taint_sources": sources}
}

// taintsToSet are the taints an allowed action sets: untrusted_content for
// a read of a resource whose (catalog and enforcement point) attributes say
// trust: untrusted, and the names in the policy's taint obligation. An
// obligation that is not a list of taint names is an error: what policy
// meant to mark is unknown.
func taintsToSet(input map[string]any, obligations map[string]any) ([]string, error) {
	var out []string
	if res, ok := input["resource"].(map[string]any); ok {
		if attrs, ok := res["attributes"].(map[string]any); ok && attrs["trust"] == TrustUntrusted {
			out = append(out, taintUntrusted)
		}
	}
	v, ok := obligations["taint"]
	if !ok {
		return out, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, errors.New("the taint obligation is not a list of taint names")
	}
	for _, x := range list {
		s, ok := x.(string)
		if !ok || !wire.ValidTaint(s) {
			return nil, fmt.Errorf("the taint obligation holds %v, not a taint name (1 to 64 of a-z, 0-9, '_', '-', '.', ':')", x)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// setTaints records the taints an allowed action sets, before it is
// answered. It returns the ones that are new, for the record; an error
// means the action must be denied.
func (p *Pipeline) setTaints(ctx context.Context, d Decision, pep string, req *Request, tok *identity.Token, names []string) ([]store.Taint, error) {
	if p.cfg.Taints == nil || len(names) == 0 {
		return nil, nil
	}
	agent, task := taintHolder(tok)
	var created []store.Taint
	for _, name := range names {
		t := store.Taint{AgentID: agent, Task: task, Name: name, DecisionID: d.ID, EnforcementPoint: pep, Action: req.Action,
			ResourceKind: req.Resource.Kind, ResourceID: req.Resource.ID}
		isNew, err := p.cfg.Taints.Record(ctx, t)
		if err != nil {
			return nil, err
		}
		if isNew {
			created = append(created, t)
		}
	}
	return created, nil
}

// taint records the taints an allowed action sets; an error is the reason
// of the deny it becomes.
func (p *Pipeline) taint(ctx context.Context, d Decision, pep string, req *Request, tok *identity.Token, input map[string]any) ([]store.Taint, error) {
	names, err := taintsToSet(input, d.Obligations)
	if err != nil {
		p.lg.Warn("decision: the taint obligation cannot be applied; denied", "decision_id", d.ID, "err", err)
		return nil, errors.New(policy.ReasonError)
	}
	created, err := p.setTaints(ctx, d, pep, req, tok, names)
	if err != nil {
		p.lg.Warn("decision: a taint could not be recorded; denied", "decision_id", d.ID, "err", err)
		return nil, errors.New(ReasonStateUnavailable)
	}
	return created, nil
}

func taintNames(ts []store.Taint) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Name
	}
	return out
}
