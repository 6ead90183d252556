package decide

import (
	"hash/maphash"
	"maps"
	"slices"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/monitor"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
	"github.com/warden-run/warden/internal/wire"
)

// The parts of a decision's input that stay the same from one decision to
// the next (the agent, and the provenance block of an enforcement point
// that does not follow reads) are built and converted to the policy
// engine's values once: converting the whole input in every decision was
// a good share of a small policy's evaluation.

// agentPart is the input's agent for one agent's state and token roles:
// the map (shared by the decisions that use it, never changed) and its
// conversion.
type agentPart struct {
	subject string
	roles   []string
	owner   string
	status  store.AgentStatus
	attrs   map[string]string // a copy: the record's own may change
	m       map[string]any
	v       ast.Value
}

// slots keeps the parts made last, one per slot; a slot is taken by the
// last part hashed to it. A caller checks that a part it finds is the one
// it wants.
type slots[T any] struct {
	seed  maphash.Seed
	mu    sync.Mutex
	slots [512]*T
}

func newSlots[T any]() *slots[T] { return &slots[T]{seed: maphash.MakeSeed()} }

// slot is where the part named by keys goes.
func (c *slots[T]) slot(keys ...string) int {
	var h maphash.Hash
	h.SetSeed(c.seed)
	for _, k := range keys {
		h.WriteString(k)
		h.WriteByte(0)
	}
	return int(h.Sum64() % uint64(len(c.slots)))
}

func (c *slots[T]) get(i int) *T {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slots[i]
}

func (c *slots[T]) put(i int, v *T) {
	c.mu.Lock()
	c.slots[i] = v
	c.mu.Unlock()
}

// parts keeps the pipeline's input parts.
type parts struct {
	agents    *slots[agentPart]
	resources *slots[resourcePart]
	risks     *slots[riskPart]
}

func newParts() parts {
	return parts{agents: newSlots[agentPart](), resources: newSlots[resourcePart](), risks: newSlots[riskPart]()}
}

// agent is the input's agent for tok and rec, and its conversion (nil
// when it could not be converted: the input is then converted whole).
func (p *Pipeline) agent(tok *identity.Token, rec store.Agent) (map[string]any, ast.Value) {
	c := p.parts.agents
	i := c.slot(tok.Subject)
	if a := c.get(i); a != nil && a.subject == tok.Subject && a.owner == rec.Owner && a.status == rec.Status &&
		slices.Equal(a.roles, tok.Roles) && maps.Equal(a.attrs, rec.Attributes) {
		return a.m, a.v
	}
	a := &agentPart{subject: tok.Subject, roles: tok.Roles, owner: rec.Owner, status: rec.Status,
		attrs: maps.Clone(rec.Attributes), m: p.agentInput(tok, rec)}
	var err error
	if a.v, err = ast.InterfaceToValue(a.m); err != nil {
		return a.m, nil
	}
	c.put(i, a)
	return a.m, a.v
}

// resourcePart is the input's resource as a policy version's catalog
// describes it, for a request that sends no attributes of its own.
type resourcePart struct {
	engine   *policy.Engine
	kind, id string
	m        map[string]any
	v        ast.Value
}

// resource is the input's resource, and its conversion when kept.
func (p *Pipeline) resource(engine *policy.Engine, r Resource) (map[string]any, ast.Value) {
	m := func() map[string]any {
		return map[string]any{"kind": r.Kind, "id": r.ID, "attributes": engine.Resources().Enrich(r.Kind, r.ID, r.Attributes)}
	}
	if len(r.Attributes) > 0 {
		return m(), nil // the enforcement point's own: as many as requests
	}
	c := p.parts.resources
	i := c.slot(r.Kind, r.ID)
	if x := c.get(i); x != nil && x.engine == engine && x.kind == r.Kind && x.id == r.ID {
		return x.m, x.v
	}
	x := &resourcePart{engine: engine, kind: r.Kind, id: r.ID, m: m()}
	var err error
	if x.v, err = ast.InterfaceToValue(x.m); err != nil {
		return x.m, nil
	}
	c.put(i, x)
	return x.m, x.v
}

// riskPart is the input's context.risk for one agent's risk.
type riskPart struct {
	agent string
	risk  monitor.Risk
	m     map[string]any
	v     ast.Value
}

// riskInput is context.risk for the risk r of agent, and its conversion
// when kept.
func (p *Pipeline) riskInput(agent string, r monitor.Risk) (map[string]any, ast.Value) {
	c := p.parts.risks
	i := c.slot(agent)
	if x := c.get(i); x != nil && x.agent == agent && x.risk.Score == r.Score && x.risk.Level == r.Level &&
		x.risk.Learning == r.Learning && x.risk.Stale == r.Stale && slices.Equal(x.risk.Signals, r.Signals) {
		return x.m, x.v
	}
	x := &riskPart{agent: agent, risk: r, m: r.Input()}
	x.risk.Signals = slices.Clone(r.Signals)
	var err error
	if x.v, err = ast.InterfaceToValue(x.m); err != nil {
		return x.m, nil
	}
	c.put(i, x)
	return x.m, x.v
}

// unknownProvenance is the conversion of provenanceInput(nil, withArgs),
// by withArgs.
var unknownProvenance = func() [2]ast.Value {
	var out [2]ast.Value
	for i, withArgs := range []bool{false, true} {
		out[i] = ast.MustInterfaceToValue(provenanceInput(nil, withArgs))
	}
	return out
}()

// inputParts are the parts of an input already converted, for the engine:
// each value given (nil for none) with its place.
func inputParts(agent, resource, risk ast.Value, prov *wire.Provenance, withArgs bool) []policy.Part {
	ps := make([]policy.Part, 0, 4)
	for _, p := range [...]policy.Part{{Path: "agent", Value: agent}, {Path: "resource", Value: resource}, {Path: "context.risk", Value: risk}} {
		if p.Value != nil {
			ps = append(ps, p)
		}
	}
	if prov == nil {
		i := 0
		if withArgs {
			i = 1
		}
		ps = append(ps, policy.Part{Path: "context.provenance", Value: unknownProvenance[i]})
	}
	return ps
}
