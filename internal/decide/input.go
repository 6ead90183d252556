package decide

import (
	"encoding/base32"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/monitor"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/provenance"
	"github.com/warden-run/warden/internal/store"
	"github.com/warden-run/warden/internal/wire"
)

// InputVersion is the version of the policy input contract
// (docs/policy-reference.md).
const InputVersion = 1

// input builds the policy input of an authenticated request: the agent's
// record and the token's roles, the resource with the catalog's
// attributes, and the context Warden knows (time, source and region,
// delegation, the agent's taints and where they came from, its risk).
// context.approvals is empty: approvals are counted after evaluation
// (approvals.go). parts are the parts of it already converted for the
// engine.
func (p *Pipeline) input(req *Request, args map[string]any, tok *identity.Token, rec store.Agent, live *policy.Live, now time.Time, held []store.Taint) (map[string]any, []policy.Part) {
	engine := live.Active
	delegation := make([]any, len(tok.Chain))
	for i, a := range tok.Chain {
		delegation[i] = a.String()
	}
	source := map[string]any{}
	if req.Context.Source.IP != "" {
		source["ip"] = req.Context.Source.IP
		source["region"] = p.region(req.Context.Source.IP)
	}
	agent, agentValue := p.agent(tok, rec)
	resource, resourceValue := p.resource(engine, req.Resource)
	risk, riskValue := p.riskInput(tok.Subject, p.risk(tok))
	withArgs := readsArgProvenance(live)
	return map[string]any{
		"agent":    agent,
		"action":   req.Action,
		"resource": resource,
		"args":     args,
		"context": map[string]any{
			"time":       now.Format(time.RFC3339),
			"source":     source,
			"risk":       risk,
			"session":    sessionInput(req.Context.Session, tok.Task, held),
			"grants":     p.grants(tok, req, args, now),
			"delegation": delegation,
			"approvals":  []any{},
			"provenance": provenanceInput(req.Context.Provenance, withArgs),
		},
	}, inputParts(agentValue, resourceValue, riskValue, req.Context.Provenance, withArgs)
}

// agentInput is the input's agent: its record, and the token's roles (a
// restricted agent keeps only the safe roles, when some are set).
func (p *Pipeline) agentInput(tok *identity.Token, rec store.Agent) map[string]any {
	attrs := make(map[string]any, len(rec.Attributes))
	for k, v := range rec.Attributes {
		attrs[k] = v
	}
	roles := make([]any, 0, len(tok.Roles))
	for _, r := range tok.Roles {
		if rec.Status == store.StatusRestricted && len(p.cfg.RestrictedRoles) > 0 && !slices.Contains(p.cfg.RestrictedRoles, r) {
			continue
		}
		roles = append(roles, r)
	}
	path := tok.Agent.Path()
	pathAny := make([]any, len(path))
	for i, s := range path {
		pathAny[i] = s
	}
	return map[string]any{
		"id":           tok.Subject,
		"trust_domain": tok.Agent.TrustDomain(),
		"path":         pathAny,
		"roles":        roles,
		"owner":        rec.Owner,
		"attributes":   attrs,
		"status":       string(rec.Status),
	}
}

// GrantSource answers the task grants a decision sees (grants.Service).
type GrantSource interface {
	ForDecision(agent, task, action, resource string, args map[string]any, now time.Time) []any
}

// grants is the grants of the token's subject in force for its task.
func (p *Pipeline) grants(tok *identity.Token, req *Request, args map[string]any, now time.Time) []any {
	if p.cfg.Grants == nil {
		return []any{}
	}
	return p.cfg.Grants.ForDecision(tok.Subject, tok.Task, req.Action, req.Resource.ID, args, now)
}

// RiskSource answers an agent's live risk.
type RiskSource interface {
	Risk(agent string) monitor.Risk
}

// risk is the risk of the token's subject or, when higher, of an agent in
// its delegation chain: a risky agent acting for another is as risky.
// Without a monitor, every agent's risk is low.
func (p *Pipeline) risk(tok *identity.Token) monitor.Risk {
	if p.cfg.Risk == nil {
		return monitor.Risk{Level: monitor.LevelLow, Signals: []string{}}
	}
	r := p.cfg.Risk.Risk(tok.Subject)
	for _, a := range tok.Chain {
		if ar := p.cfg.Risk.Risk(a.String()); ar.Score > r.Score {
			ar.Stale = ar.Stale || r.Stale
			r = ar
		}
	}
	return r
}

// taints is the session's taints as policy sees them: a sorted set.
func taints(ts []string) []any {
	s := slices.Clone(ts)
	slices.Sort(s)
	s = slices.Compact(s)
	out := make([]any, len(s))
	for i, t := range s {
		out[i] = t
	}
	return out
}

// region returns the name of the most specific configured range that
// holds ip, "" when none does.
func (p *Pipeline) region(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ""
	}
	a = a.Unmap()
	for _, r := range p.regions {
		if r.prefix.Contains(a) {
			return r.name
		}
	}
	return ""
}

// sortRegions puts the longest prefixes first, so the most specific wins.
func sortRegions(rs []region) {
	slices.SortStableFunc(rs, func(a, b region) int {
		if d := b.prefix.Bits() - a.prefix.Bits(); d != 0 {
			return d
		}
		return strings.Compare(a.name, b.name)
	})
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// provenanceInput is the input's context.provenance: where the arguments
// came from, as the enforcement point that follows the agent's reads says
// (known false when it says nothing: an enforcement point that does not
// follow reads, or is not trusted for session context). Always the
// summary (the arguments whose values came only from untrusted content,
// those read nowhere, how many carry values, whether the agent read
// untrusted content and whether reads were forgotten); each argument's sources,
// upstreams, tools and reads (args) only when withArgs, since they are most
// of its size, and its size is paid for in every decision: converted for
// the policy, keyed, canonicalised, hashed and recorded.
func provenanceInput(p *wire.Provenance, withArgs bool) map[string]any {
	if p == nil {
		in := map[string]any{"known": false, "untrusted": []any{}, "unknown": []any{}, "arguments": 0, "read_untrusted": false, "forgotten": false}
		if withArgs {
			in["args"] = map[string]any{}
		}
		return in
	}
	var untrusted, unknown []string
	for path, o := range p.Args {
		if o.OnlyUntrusted {
			untrusted = append(untrusted, path)
		} else if len(o.Sources) == 1 && o.Sources[0] == provenance.Unknown {
			unknown = append(unknown, path)
		}
	}
	slices.Sort(untrusted)
	slices.Sort(unknown)
	// Whether the agent read untrusted content, and whether reads were
	// forgotten, not how many: a count that moves with every read would
	// make every input new, and the decision memo and the rule cache
	// would never serve a repeated call again. The counts are in the
	// entry's lineage.
	in := map[string]any{"known": true, "untrusted": strs(untrusted), "unknown": strs(unknown), "arguments": len(p.Args),
		"read_untrusted": len(p.UntrustedReads) > 0, "forgotten": p.Evicted > 0}
	if withArgs {
		args := make(map[string]any, len(p.Args))
		for path, o := range p.Args {
			args[path] = map[string]any{"sources": strs(o.Sources), "only_untrusted": o.OnlyUntrusted,
				"upstreams": strs(o.Upstreams), "tools": strs(o.Tools), "reads": ints(o.Reads)}
		}
		in["args"] = args
	}
	return in
}

// argProvenance is where each argument's provenance is in the input.
var argProvenance = []string{"context", "provenance", "args"}

// readsArgProvenance says whether a live policy (the active one, or the
// one in shadow, which is evaluated on the same input) may read each
// argument's provenance.
func readsArgProvenance(live *policy.Live) bool {
	return live.Active != nil && live.Active.ReadsInput(argProvenance...) || live.Shadow != nil && live.Shadow.ReadsInput(argProvenance...)
}

func strs(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func ints(ns []int64) []any {
	out := make([]any, len(ns))
	for i, n := range ns {
		out[i] = n
	}
	return out
}
