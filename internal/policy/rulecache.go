package policy

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// A policy version's data never changes, and its input changes only in
// part from one decision to the next: an agent's requests share its roles
// and status, calls of one tool share the resource. So a rule's value is a
// function of the input paths it reads (and, if it asks the clock, of the
// decision's second), and the engine keeps rule values across evaluations,
// keyed by those parts of the input:
//
//   - a rule that reads no input at all (a configuration check, a table
//     derived from data.json) is computed once for the life of the version;
//   - a rule that reads some input paths is kept per distinct value of
//     those paths (roles, action, resource id...), so a request that differs
//     from an earlier one only in what a rule does not read reuses it.
//
// A rule is kept only when neither it nor anything it refers to,
// transitively, uses with, calls a non-deterministic builtin other than
// time.now_ns, or reads the input as a whole. Only a rule's whole value is
// kept, never a lookup into it, and each rule keeps a bounded number of
// values.

// rulesKept bounds the values kept per rule; a full table starts afresh.
const rulesKept = 4096

// maxKeptKey bounds the key of a value kept: a rule that read a large
// input (an agent's megabyte of arguments) is evaluated every time rather
// than kept, or 4,096 such keys, per rule, would hold gigabytes.
const maxKeptKey = 4096

// ruleCache is what one engine knows of the rules it keeps, and their values.
type ruleCache struct {
	rules map[int][]*keptRule // by the hash of the rule's path
	// pure: no rule calls a non-deterministic builtin other than
	// time.now_ns (whose value is the decision's time), so a decision is
	// a function of the input alone.
	pure bool
	// reads holds every input path some rule or function reads (as
	// "context\x00provenance\x00args"), within every path that holds one
	// ("context", "context\x00provenance" and the path itself); readsAll
	// is true when a rule may read any of the input (the whole input, a
	// path computed at evaluation, with).
	reads, within map[string]bool
	readsAll      bool
}

// keptRule is one rule whose values are kept.
type keptRule struct {
	ref    ast.Ref // such as data.warden.guardrails.deny
	path   string
	inputs [][]string // the input paths it reads, none inside another
	names  []string   // the same, each as one string ("agent\x00roles")
	clock  bool       // it asks time.now_ns

	mu     sync.Mutex
	values map[string]keptValue
}

type keptValue struct {
	term      *ast.Term
	undefined bool
}

// ruleFacts is what the analysis learns of one rule path.
type ruleFacts struct {
	opaque bool            // with, a non-deterministic builtin, or the whole input
	clock  bool            // time.now_ns
	inputs map[string]bool // input paths read, as "agent\x00roles"
	deps   map[string]bool // rule paths it refers to
}

// analyseRules finds the rules the engine can keep.
func analyseRules(c *ast.Compiler) *ruleCache {
	facts := map[string]*ruleFacts{}
	rc := &ruleCache{rules: map[int][]*keptRule{}, pure: true}
	for _, m := range c.Modules {
		for _, r := range m.Rules {
			path := r.Ref().GroundPrefix().String()
			f := facts[path]
			if f == nil {
				f = &ruleFacts{inputs: map[string]bool{}, deps: map[string]bool{}}
				facts[path] = f
			}
			for rule := r; rule != nil; rule = rule.Else {
				readRule(c, rule, f, rc)
			}
		}
	}
	rc.reads, rc.within = map[string]bool{}, map[string]bool{}
	for _, f := range facts {
		rc.readsAll = rc.readsAll || f.opaque
		for in := range f.inputs {
			rc.reads[in] = true
			for i := range len(in) + 1 {
				if i == len(in) || in[i] == 0 {
					rc.within[in[:i]] = true
				}
			}
		}
	}
	// Close over dependencies: a rule reads what the rules it refers to read.
	for changed := true; changed; {
		changed = false
		for _, f := range facts {
			for d := range f.deps {
				g := facts[d]
				if g == nil || g == f {
					continue
				}
				if g.opaque && !f.opaque {
					f.opaque, changed = true, true
				}
				if g.clock && !f.clock {
					f.clock, changed = true, true
				}
				for in := range g.inputs {
					if !f.inputs[in] {
						f.inputs[in], changed = true, true
					}
				}
			}
		}
	}
	// Rules whose paths overlap (t["a"] := 1 and t[k] := 2 if ...) define
	// one document together: a value of t.a kept from the first would hide
	// what the second says. Neither is kept.
	var refs []ast.Ref
	for _, m := range c.Modules {
		for _, r := range m.Rules {
			refs = append(refs, r.Ref().GroundPrefix())
		}
	}
	overlaps := func(ref ast.Ref) bool {
		for _, o := range refs {
			if !o.Equal(ref) && (o.HasPrefix(ref) || ref.HasPrefix(o)) {
				return true
			}
		}
		return false
	}
	seen := map[string]bool{}
	for _, m := range c.Modules {
		for _, r := range m.Rules {
			ref := r.Ref().GroundPrefix()
			path := ref.String()
			f := facts[path]
			// A function's value depends on its arguments: never kept,
			// though a kept rule may call one.
			if f.opaque || len(r.Head.Args) > 0 || seen[path] || overlaps(ref) {
				continue
			}
			seen[path] = true
			kr := &keptRule{ref: ref, path: path, clock: f.clock, inputs: minimalPaths(f.inputs), values: map[string]keptValue{}}
			for _, in := range kr.inputs {
				kr.names = append(kr.names, strings.Join(in, "\x00"))
			}
			rc.rules[ref.Hash()] = append(rc.rules[ref.Hash()], kr)
		}
	}
	return rc
}

// readRule records what one rule (one body of a path) reads.
func readRule(c *ast.Compiler, r *ast.Rule, f *ruleFacts, rc *ruleCache) {
	// object.get(input, ["agent", "status"], default) reads input.agent.status,
	// though it names the whole input.
	skip := map[*ast.Term]bool{}
	ast.WalkExprs(r, func(e *ast.Expr) bool {
		if e.IsCall() && e.Operator().String() == "object.get" && len(e.Operands()) >= 3 {
			if p, ok := objectGetPath(e.Operand(0), e.Operand(1)); ok {
				f.inputs[p] = true
				skip[e.Operand(0)] = true
			}
		}
		return false
	})
	ast.WalkExprs(r, func(e *ast.Expr) bool {
		if len(e.With) > 0 {
			f.opaque = true
		}
		if e.IsCall() {
			name := e.Operator().String()
			if b, ok := ast.BuiltinMap[name]; ok && b.IsNondeterministic() {
				if name == "time.now_ns" {
					f.clock = true
				} else {
					f.opaque, rc.pure = true, false
				}
			}
		}
		return false
	})
	ast.WalkTerms(r, func(t *ast.Term) bool {
		if skip[t] {
			return true
		}
		switch v := t.Value.(type) {
		case ast.Var:
			if v.Equal(ast.InputRootDocument.Value) {
				f.opaque = true // the whole input (a bare input, input[x])
			}
		case ast.Ref:
			if v.HasPrefix(ast.InputRootRef) {
				if p := inputPath(v); p != "" {
					f.inputs[p] = true
				} else {
					f.opaque = true
				}
				// Walk only the ref's non-ground parts (variables, nested refs).
				for _, part := range v[1:] {
					if _, isString := part.Value.(ast.String); !isString {
						ast.WalkTerms(part, func(t *ast.Term) bool {
							if r, ok := t.Value.(ast.Ref); ok && r.HasPrefix(ast.InputRootRef) {
								if p := inputPath(r); p != "" {
									f.inputs[p] = true
								} else {
									f.opaque = true
								}
							}
							return false
						})
					}
				}
				return true // its head is the input var, already accounted for
			}
			if v.HasPrefix(ast.DefaultRootRef) {
				for _, dep := range c.GetRules(v) {
					f.deps[dep.Ref().GroundPrefix().String()] = true
				}
			}
		}
		return false
	})
}

// objectGetPath is the input path object.get(obj, path, _) reads, when obj
// is the input (or an input ref) and path is constant.
func objectGetPath(obj, path *ast.Term) (string, bool) {
	var parts []string
	switch o := obj.Value.(type) {
	case ast.Var:
		if !o.Equal(ast.InputRootDocument.Value) {
			return "", false
		}
	case ast.Ref:
		p := inputPath(o)
		if !o.HasPrefix(ast.InputRootRef) || p == "" || len(strings.Split(p, "\x00")) != len(o)-1 {
			return "", false
		}
		parts = strings.Split(p, "\x00")
	default:
		return "", false
	}
	switch x := path.Value.(type) {
	case ast.String:
		parts = append(parts, string(x))
	case *ast.Array:
		for i := 0; i < x.Len(); i++ {
			s, ok := x.Elem(i).Value.(ast.String)
			if !ok {
				return "", false
			}
			parts = append(parts, string(s))
		}
	default:
		return "", false
	}
	if len(parts) == 0 {
		return "", false
	}
	return strings.Join(parts, "\x00"), true
}

// inputPath is the object-key prefix of an input ref: input.agent.roles[_]
// reads input.agent.roles. "" when the ref reads the input as a whole.
func inputPath(ref ast.Ref) string {
	var parts []string
	for _, t := range ref[1:] {
		s, ok := t.Value.(ast.String)
		if !ok {
			break
		}
		parts = append(parts, string(s))
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, "\x00")
}

// minimalPaths drops paths inside others (input.agent covers input.agent.roles).
func minimalPaths(set map[string]bool) [][]string {
	var keys []string
	for k := range set {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out [][]string
	for _, k := range keys {
		covered := false
		for _, o := range keys {
			if o != k && strings.HasPrefix(k, o+"\x00") {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, strings.Split(k, "\x00"))
		}
	}
	return out
}

// cacheFor returns the virtual document cache of one evaluation of input
// at the clock at: OPA's own, in front of which kept rules are served and
// kept. A nil input map (an input of another type) keeps only the rules
// that read no input.
func (rc *ruleCache) cacheFor(input map[string]any, at time.Time) *evalCache {
	return &evalCache{rc: rc, local: topdown.NewVirtualCache(), input: input, at: at, keyed: input != nil}
}

type evalCache struct {
	rc    *ruleCache
	local topdown.VirtualCache
	input map[string]any
	at    time.Time
	keyed bool
	// depth counts the frames pushed by with: inside one, data or input
	// may be replaced, so nothing is served or kept.
	depth int
	keys  map[*keptRule]string
	// unkept are the rules not kept in this evaluation: their key could
	// not be made, or is too large to keep.
	unkept map[*keptRule]bool
	// encoded holds each input path's encoding once it was made: rules
	// that read the same path (a large one, such as the arguments'
	// provenance) share it instead of encoding it again.
	encoded map[string]string
	pending []pendingValue
}

func (c *evalCache) Push() { c.depth++; c.local.Push() }
func (c *evalCache) Pop()  { c.depth--; c.local.Pop() }

func (c *evalCache) Keys() []ast.Ref { return c.local.Keys() }

// kept finds ref among the kept rules, by hash then equality (this is on
// every lookup of every rule), and the key of its value in this evaluation.
func (c *evalCache) kept(ref ast.Ref) (*keptRule, string, bool) {
	if c.depth != 0 {
		return nil, "", false
	}
	for _, kr := range c.rc.rules[ref.Hash()] {
		if !kr.ref.Equal(ref) {
			continue
		}
		if len(kr.inputs) == 0 && !kr.clock {
			return kr, "", true
		}
		if !c.keyed {
			return nil, "", false
		}
		if k, ok := c.keys[kr]; ok {
			return kr, k, true
		}
		if c.unkept[kr] {
			return nil, "", false
		}
		k, ok := c.key(kr)
		if !ok || len(k) > maxKeptKey {
			if c.unkept == nil {
				c.unkept = map[*keptRule]bool{}
			}
			c.unkept[kr] = true
			return nil, "", false
		}
		if c.keys == nil {
			c.keys = map[*keptRule]string{}
		}
		c.keys[kr] = k
		return kr, k, true
	}
	return nil, "", false
}

// key encodes the values of the rule's input paths (and the clock); false
// when one of them is not a JSON-shaped value.
func (c *evalCache) key(kr *keptRule) (string, bool) {
	var b []byte
	if kr.clock {
		b = binary.BigEndian.AppendUint64(b, uint64(c.at.UnixNano()))
	}
	for i, p := range kr.inputs {
		if e, ok := c.encoded[kr.names[i]]; ok {
			b = append(b, e...)
			continue
		}
		start := len(b)
		var v any = c.input
		found := true
		for _, seg := range p {
			m, ok := v.(map[string]any)
			if !ok {
				found = false
				break
			}
			if v, ok = m[seg]; !ok {
				found = false
				break
			}
		}
		if !found {
			b = append(b, 'U') // undefined, unlike any value
			continue
		}
		var ok bool
		if b, ok = appendValueKey(b, v); !ok {
			return "", false
		}
		if len(b)-start > sharedEncoding {
			if c.encoded == nil {
				c.encoded = map[string]string{}
			}
			c.encoded[kr.names[i]] = string(b[start:])
		}
	}
	return string(b), true
}

// sharedEncoding is the size above which an input path's encoding is kept
// for the other rules of the evaluation that read it: below, encoding it
// again costs less than keeping it.
const sharedEncoding = 64

// appendValueKey encodes a JSON-shaped Go value injectively: a type tag,
// lengths before contents, object keys sorted. Values OPA would read alike
// (1 and 1.0) may encode differently; that costs a reuse, never a wrong
// one. false for a value of any other type.
func appendValueKey(b []byte, v any) ([]byte, bool) {
	switch x := v.(type) {
	case nil:
		return append(b, 'n'), true
	case bool:
		if x {
			return append(b, 't'), true
		}
		return append(b, 'f'), true
	case string:
		return appendLen(append(b, 's'), x), true
	case json.Number:
		return appendLen(append(b, 'j'), string(x)), true
	case int:
		return appendLen(append(b, 'i'), strconv.Itoa(x)), true
	case int64:
		return appendLen(append(b, 'i'), strconv.FormatInt(x, 10)), true
	case float64:
		return binary.BigEndian.AppendUint64(append(b, 'd'), math.Float64bits(x)), true
	case []any:
		b = binary.AppendUvarint(append(b, 'a'), uint64(len(x)))
		for _, e := range x {
			var ok bool
			if b, ok = appendValueKey(b, e); !ok {
				return nil, false
			}
		}
		return b, true
	case []string:
		b = binary.AppendUvarint(append(b, 'a'), uint64(len(x)))
		for _, e := range x {
			b = appendLen(append(b, 's'), e)
		}
		return b, true
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = binary.AppendUvarint(append(b, 'o'), uint64(len(x)))
		for _, k := range keys {
			var ok bool
			if b, ok = appendValueKey(appendLen(b, k), x[k]); !ok {
				return nil, false
			}
		}
		return b, true
	case map[string]string:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = binary.AppendUvarint(append(b, 'o'), uint64(len(x)))
		for _, k := range keys {
			b = appendLen(append(appendLen(b, k), 's'), x[k])
		}
		return b, true
	}
	return nil, false
}

func appendLen(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func (c *evalCache) Get(ref ast.Ref) (*ast.Term, bool) {
	if v, undefined := c.local.Get(ref); v != nil || undefined {
		return v, undefined
	}
	kr, key, ok := c.kept(ref)
	if !ok {
		return nil, false
	}
	kr.mu.Lock()
	kv, found := kr.values[key]
	kr.mu.Unlock()
	if !found {
		return nil, false
	}
	return kv.term, kv.undefined
}

// Put records a rule's value for this evaluation; kept rules' values are
// kept for others only by commit, once the evaluation has succeeded. (A
// builtin that fails does not stop OPA at once: it finishes the evaluation
// as if the builtin were undefined, then reports the error. Values computed
// meanwhile are not values of the rule.)
func (c *evalCache) Put(ref ast.Ref, value *ast.Term) {
	c.local.Put(ref, value)
	if kr, key, ok := c.kept(ref); ok {
		c.pending = append(c.pending, pendingValue{kr, key, keptValue{term: value, undefined: value == nil}})
	}
}

type pendingValue struct {
	kr    *keptRule
	key   string
	value keptValue
}

// commit keeps the values of an evaluation that succeeded.
func (c *evalCache) commit() {
	for _, p := range c.pending {
		p.kr.mu.Lock()
		if len(p.kr.values) >= rulesKept {
			p.kr.values = make(map[string]keptValue, rulesKept)
		}
		p.kr.values[p.key] = p.value
		p.kr.mu.Unlock()
	}
}

// ReadsInput says whether the policy may read the input at path, or
// anything inside it: some rule or function reads it, a part of it, or an
// object that holds it, or the whole input. An input builder may leave out
// what no rule reads; false is never said of a path a rule can reach.
func (e *Engine) ReadsInput(path ...string) bool {
	rc := e.rules
	if rc.readsAll {
		return true
	}
	name := strings.Join(path, "\x00")
	if rc.within[name] { // the path itself, or a path inside it
		return true
	}
	for i := range len(name) {
		if name[i] == 0 && rc.reads[name[:i]] {
			return true // an object that holds it
		}
	}
	return false
}
