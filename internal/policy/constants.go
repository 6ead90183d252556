package policy

import (
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// A policy version's data never changes, so a rule whose value depends on
// the data alone (a configuration check, a set of statuses, a table derived
// from data.json) has the same value in every evaluation. The engine keeps
// such values, once computed, for the life of the version: OPA computes
// them in every evaluation otherwise.
//
// A rule is constant when neither it nor any rule or function it refers to
// (transitively) refers to the input, calls a non-deterministic builtin
// (time.now_ns, rand.intn, ...), or uses with. Only a rule's whole value is
// kept, never a lookup into it: keys that come from the input cannot grow
// the table.

// constants is what one engine knows of its constant rules, and their values.
type constants struct {
	rules  map[int][]constRule // by the hash of the rule's path
	values sync.Map            // rule path (string) -> constValue
	// pure: no rule calls a non-deterministic builtin other than
	// time.now_ns (whose value is the decision's time), so a decision is
	// a function of the input alone.
	pure bool
}

type constRule struct {
	ref ast.Ref // such as data.warden.guardrails.configured
	key string
}

type constValue struct {
	term      *ast.Term
	undefined bool
}

// findConstants analyses the compiled modules.
func findConstants(c *ast.Compiler) *constants {
	type info struct {
		direct bool            // refers to the input, a non-deterministic builtin, or with
		deps   map[string]bool // rule paths it refers to
	}
	paths := map[string]*info{}
	for _, m := range c.Modules {
		for _, r := range m.Rules {
			path := r.Ref().GroundPrefix().String()
			in := paths[path]
			if in == nil {
				in = &info{deps: map[string]bool{}}
				paths[path] = in
			}
			for rule := r; rule != nil; rule = rule.Else {
				if refersToInput(rule) || usesWithOrNondeterminism(rule) {
					in.direct = true
				}
				ast.WalkRefs(rule, func(ref ast.Ref) bool {
					if ref.HasPrefix(ast.DefaultRootRef) {
						for _, dep := range c.GetRules(ref) {
							in.deps[dep.Ref().GroundPrefix().String()] = true
						}
					}
					return false
				})
			}
		}
	}
	varying := map[string]bool{}
	for p, in := range paths {
		if in.direct {
			varying[p] = true
		}
	}
	for changed := true; changed; {
		changed = false
		for p, in := range paths {
			if varying[p] {
				continue
			}
			for d := range in.deps {
				if varying[d] {
					varying[p] = true
					changed = true
					break
				}
			}
		}
	}
	k := &constants{rules: map[int][]constRule{}, pure: true}
	for _, m := range c.Modules {
		ast.WalkExprs(m, func(e *ast.Expr) bool {
			if e.IsCall() {
				name := e.Operator().String()
				if b, ok := ast.BuiltinMap[name]; ok && b.IsNondeterministic() && name != "time.now_ns" {
					k.pure = false
				}
			}
			return false
		})
	}
	seen := map[string]bool{}
	for _, m := range c.Modules {
		for _, r := range m.Rules {
			ref := r.Ref().GroundPrefix()
			p := ref.String()
			// A function's value depends on its arguments: never kept,
			// though a constant rule may call one.
			if varying[p] || len(r.Head.Args) > 0 || seen[p] {
				continue
			}
			seen[p] = true
			k.rules[ref.Hash()] = append(k.rules[ref.Hash()], constRule{ref: ref, key: p})
		}
	}
	return k
}

func refersToInput(r *ast.Rule) bool {
	found := false
	ast.WalkTerms(r, func(t *ast.Term) bool {
		switch v := t.Value.(type) {
		case ast.Var:
			if v.Equal(ast.InputRootDocument.Value) {
				found = true
			}
		case ast.Ref:
			if v.HasPrefix(ast.InputRootRef) {
				found = true
			}
		}
		return found
	})
	return found
}

func usesWithOrNondeterminism(r *ast.Rule) bool {
	found := false
	ast.WalkExprs(r, func(e *ast.Expr) bool {
		if len(e.With) > 0 {
			found = true
		}
		if e.IsCall() {
			if b, ok := ast.BuiltinMap[e.Operator().String()]; ok && b.IsNondeterministic() {
				found = true
			}
		}
		return found
	})
	return found
}

// cacheFor returns the virtual document cache of one evaluation: OPA's own,
// in front of which the version's constant rules are served and kept.
func (k *constants) cacheFor() topdown.VirtualCache {
	return &constCache{k: k, local: topdown.NewVirtualCache()}
}

type constCache struct {
	k     *constants
	local topdown.VirtualCache
	// depth counts the frames pushed by with: inside one, data may be
	// replaced, so constants are neither served nor kept.
	depth int
}

func (c *constCache) Push() { c.depth++; c.local.Push() }
func (c *constCache) Pop()  { c.depth--; c.local.Pop() }

func (c *constCache) Keys() []ast.Ref { return c.local.Keys() }

// key finds ref among the constant rules, by hash then equality: this is
// on every lookup of every rule, so it allocates nothing.
func (c *constCache) key(ref ast.Ref) (string, bool) {
	if c.depth != 0 || len(c.k.rules) == 0 {
		return "", false
	}
	for _, r := range c.k.rules[ref.Hash()] {
		if r.ref.Equal(ref) {
			return r.key, true
		}
	}
	return "", false
}

func (c *constCache) Get(ref ast.Ref) (*ast.Term, bool) {
	if key, ok := c.key(ref); ok {
		if v, ok := c.k.values.Load(key); ok {
			cv := v.(constValue)
			return cv.term, cv.undefined
		}
	}
	return c.local.Get(ref)
}

func (c *constCache) Put(ref ast.Ref, value *ast.Term) {
	c.local.Put(ref, value)
	if key, ok := c.key(ref); ok {
		c.k.values.Store(key, constValue{term: value, undefined: value == nil})
	}
}
