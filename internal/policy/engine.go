package policy

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// PolicyPackage is the package whose rules the engine reads: allow,
// deny and obligations.
const PolicyPackage = "warden.authz"

// enginePackage holds the engine's own query, which reads the three rules
// in one evaluation without evaluating the rest of the package (helpers,
// tests). Bundles may not define it.
const enginePackage = "system.warden"

const engineModule = `package system.warden

allow := x if { x := data.warden.authz.allow } else := null
deny := x if { x := data.warden.authz.deny } else := null
obligations := x if { x := data.warden.authz.obligations } else := null

decision := {"allow": allow, "deny": deny, "obligations": obligations}
`

var (
	engineQuery = ast.MustParseBody("data.system.warden.decision")
	// responseQuery asks the bundle's playbook; undefined when it has none.
	responseQuery = ast.MustParseBody("data.warden.response.actions")
	// grantQuery asks the bundle whether a grant is given; undefined when
	// it says nothing of grants.
	grantQuery = ast.MustParseBody("data.warden.grants.decision")
)

// Asked by partial evaluation with the arguments unknown, these say under
// which conditions on the arguments the policy allows, and denies.
var (
	mayAllowQuery = ast.MustParseBody("data.warden.authz.allow == true")
	mayDenyQuery  = ast.MustParseBody("data.warden.authz.deny[_]")
	supportRules  = ast.MustParseRef("data.partial")
)

// DefaultTimeout bounds one evaluation.
const DefaultTimeout = 50 * time.Millisecond

// Errors of evaluation. Every one of them is a deny.
var (
	ErrTimeout         = errors.New("policy evaluation timed out")
	ErrConflict        = errors.New("policy rules conflict")
	ErrEvaluation      = errors.New("policy evaluation failed")
	ErrMalformedResult = errors.New("policy result malformed")
)

// EngineConfig configures compilation and evaluation.
type EngineConfig struct {
	// Timeout bounds one evaluation. Default DefaultTimeout.
	Timeout time.Duration
	// NoRuleCache evaluates every rule in every evaluation, as OPA does
	// (see ruleCache); for comparisons and investigations.
	NoRuleCache bool
	// Limits bound the bundle. Zero fields mean DefaultLimits.
	Limits Limits

	// extraBuiltin adds a builtin that Warden's tests control (one that
	// blocks until released, say). Never set outside them.
	extraBuiltin *extraBuiltin
}

type extraBuiltin struct {
	fn   *rego.Function
	impl rego.Builtin1
}

// Engine evaluates one compiled policy version. It is prepared once and
// safe for concurrent use.
type Engine struct {
	version  string
	query    rego.PreparedEvalQuery
	response rego.PreparedEvalQuery
	grants   rego.PreparedEvalQuery
	mayAllow rego.PreparedPartialQuery
	mayDeny  rego.PreparedPartialQuery
	// partialErr is why mayAllow and mayDeny could not be prepared.
	partialErr error
	timeout    time.Duration
	resources  Catalog
	rules      *ruleCache
	keepRules  bool
	memo       memo
	// overrun counts evaluations still running past their timeout (see
	// bounded).
	overrun    *overrunGate
	evaluators evaluators
}

// Compile parses and compiles b's policy modules (its *_test.rego files
// are left to the test runner) with its data document, and prepares the
// decision query. Rego v1 only; network builtins (http.send,
// net.lookup_ip_addr) are not available, so that a decision depends on its
// input and the bundle alone and replays the same.
func Compile(ctx context.Context, b *Bundle, cfg EngineConfig) (e *Engine, err error) {
	// A bundle is outside input: one that makes OPA panic is invalid, and
	// must not take down the process that loads it (a replica following
	// an activation, the policy directory's watcher).
	defer func() {
		if p := recover(); p != nil {
			e, err = nil, fmt.Errorf("%w: the policy engine failed on this bundle", ErrInvalidBundle)
		}
	}()
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if err := b.CheckLimits(cfg.Limits); err != nil {
		return nil, err
	}
	modules, err := parseModules(b, false)
	if err != nil {
		return nil, err
	}
	data, err := b.Data()
	if err != nil {
		return nil, err
	}
	catalog, err := parseCatalog(data)
	if err != nil {
		return nil, err
	}
	engine, err := ast.ParseModuleWithOpts("warden-engine.rego", engineModule, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, err
	}
	modules["warden-engine.rego"] = engine
	// Reads return AST values: no conversion of the data per evaluation.
	st := inmem.NewFromObjectWithOpts(data, inmem.OptReturnASTValuesOnRead(true))
	txn, err := st.NewTransaction(ctx)
	if err != nil {
		return nil, err
	}
	caps := capabilities()
	evalOpts := []func(*rego.Rego){
		rego.ParsedQuery(engineQuery),
		rego.Store(st),
		// A builtin that fails (to_number("abc"), say) is an error, and so
		// a deny, not an undefined value that a deny rule could miss.
		rego.StrictBuiltinErrors(true),
	}
	if x := cfg.extraBuiltin; x != nil {
		caps.Builtins = append(caps.Builtins, &ast.Builtin{Name: x.fn.Name, Decl: x.fn.Decl})
		evalOpts = append(evalOpts, rego.Function1(x.fn, x.impl))
	}
	compiler := ast.NewCompiler().
		WithCapabilities(caps).
		WithPathConflictsCheck(storage.NonEmpty(ctx, st, txn))
	compiler.Compile(modules)
	st.Abort(ctx, txn)
	if compiler.Failed() {
		return nil, fmt.Errorf("%w: %w", ErrInvalidBundle, compiler.Errors)
	}
	pq, err := rego.New(append(evalOpts, rego.Compiler(compiler))...).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidBundle, err)
	}
	rq, err := rego.New(rego.ParsedQuery(responseQuery), rego.Store(st), rego.StrictBuiltinErrors(true), rego.Compiler(compiler)).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidBundle, err)
	}
	gq, err := rego.New(rego.ParsedQuery(grantQuery), rego.Store(st), rego.StrictBuiltinErrors(true), rego.Compiler(compiler)).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidBundle, err)
	}
	// A bundle whose allow or deny has the wrong type still compiles (and
	// every decision on it is a deny); its MayAllow is an error.
	var partial [2]rego.PreparedPartialQuery
	var partialErr error
	for i, q := range []ast.Body{mayAllowQuery, mayDenyQuery} {
		if partial[i], err = rego.New(
			rego.ParsedQuery(q),
			rego.Compiler(compiler),
			rego.Store(st),
			rego.StrictBuiltinErrors(true),
			rego.ParsedUnknowns([]*ast.Term{ast.MustParseTerm("input.args"), ast.MustParseTerm("input.context.grants")}),
		).PrepareForPartial(ctx); err != nil {
			partialErr = fmt.Errorf("%w: %v", ErrMalformedResult, err)
		}
	}
	return &Engine{version: b.Digest(), query: pq, response: rq, grants: gq, mayAllow: partial[0], mayDeny: partial[1], partialErr: partialErr, timeout: cfg.Timeout, resources: catalog, rules: analyseRules(compiler), keepRules: !cfg.NoRuleCache,
		overrun: newOverrunGate(int64(max(2, runtime.GOMAXPROCS(0)))), evaluators: evaluators{work: make(chan func())}}, nil
}

// parseModules parses the bundle's Rego files: its policy modules, and with
// tests, its *_test.rego files too. It requires package warden.authz and
// refuses the engine's own package.
func parseModules(b *Bundle, tests bool) (map[string]*ast.Module, error) {
	modules := map[string]*ast.Module{}
	var errs ast.Errors
	hasPolicy := false
	for _, p := range b.Paths() {
		k := kindOf(p)
		if k != fileModule && (k != fileTest || !tests) {
			continue
		}
		m, err := ast.ParseModuleWithOpts(p, string(b.Files[p]), ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
		if err != nil {
			var ae ast.Errors
			if errors.As(err, &ae) {
				errs = append(errs, ae...)
				continue
			}
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalidBundle, p, err)
		}
		pkg := strings.TrimPrefix(m.Package.Path.String(), "data.")
		if pkg == enginePackage || strings.HasPrefix(pkg, enginePackage+".") {
			return nil, fmt.Errorf("%w: %s: package %s is reserved for the engine", ErrInvalidBundle, p, pkg)
		}
		if pkg == PolicyPackage && k == fileModule {
			hasPolicy = true
		}
		errs = append(errs, checkCalls(m)...)
		modules[p] = m
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidBundle, errs)
	}
	if !hasPolicy {
		return nil, fmt.Errorf("%w: no module declares package %s", ErrInvalidBundle, PolicyPackage)
	}
	return modules, nil
}

// Version is the bundle digest the engine was compiled from.
func (e *Engine) Version() string { return e.version }

// Resources is the bundle's resource catalog.
func (e *Engine) Resources() Catalog { return e.resources }

// Result is what the policy said: its three rules, as evaluated.
type Result struct {
	// Allow is the value of allow; AllowDefined is false when no rule gave it one.
	Allow        bool
	AllowDefined bool
	// Deny holds the deny reasons, in order.
	Deny []string
	// Obligations is the obligations object, nil when undefined.
	Obligations map[string]any
}

// Evaluate evaluates the policy on input, a JSON-shaped value (maps with
// string keys, slices, strings, json.Number or Go numbers, booleans, nil).
// at is the decision's time: what time.now_ns() returns to the policy, so
// that a replay sees the same clock. Any error is one of ErrTimeout,
// ErrConflict, ErrEvaluation or ErrMalformedResult.
func (e *Engine) Evaluate(ctx context.Context, input any, at time.Time) (Result, error) {
	return e.evaluate(ctx, input, nil, at)
}

// evaluate is Evaluate with parts of the input already converted.
func (e *Engine) evaluate(ctx context.Context, input any, parts []Part, at time.Time) (Result, error) {
	value, err := toValue(input, parts)
	if err != nil {
		return Result{}, inputError(err)
	}
	var cache topdown.VirtualCache = topdown.NewVirtualCache()
	var kept *evalCache
	if e.keepRules {
		m, _ := input.(map[string]any)
		kept = e.rules.cacheFor(m, at)
		cache = kept
	}
	var rs rego.ResultSet
	err = e.bounded(ctx, func(ctx context.Context) (err error) {
		rs, err = e.query.Eval(ctx, rego.EvalParsedInput(value), rego.EvalTime(at), rego.EvalVirtualCache(cache))
		return err
	})
	if err != nil {
		return Result{}, err
	}
	if kept != nil {
		kept.commit()
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return Result{}, fmt.Errorf("%w: the decision is undefined", ErrMalformedResult)
	}
	doc, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return Result{}, fmt.Errorf("%w: the decision is not an object", ErrMalformedResult)
	}
	return readResult(doc)
}

// MayAllow says whether some arguments could make the action in input
// allowed: it evaluates the policy partially, with input.args and
// input.context.grants unknown (a grant the agent may ask for could allow
// it), and answers false only when no value of them gives allow true and no
// deny reason. An enforcement point uses it to hide what an agent can never
// do (tools/list); every action is still decided on its real arguments.
// On any error the answer is false with the error: hidden, never shown on
// a doubt.
func (e *Engine) MayAllow(ctx context.Context, input map[string]any, at time.Time) (bool, error) {
	if e.partialErr != nil {
		return false, e.partialErr
	}
	known := make(map[string]any, len(input))
	for k, v := range input {
		switch k {
		case "args":
		case "context":
			// A grant the agent may ask for could allow what nothing else
			// does: the grants are unknown too.
			if cx, ok := v.(map[string]any); ok {
				rest := make(map[string]any, len(cx))
				for ck, cv := range cx {
					if ck != "grants" {
						rest[ck] = cv
					}
				}
				v = rest
			}
			known[k] = v
		default:
			known[k] = v
		}
	}
	value, err := ast.InterfaceToValue(known)
	if err != nil {
		return false, inputError(err)
	}
	var allow, deny *rego.PartialQueries
	err = e.bounded(ctx, func(ctx context.Context) (err error) {
		allow, err = e.mayAllow.Partial(ctx, rego.EvalParsedInput(value), rego.EvalTime(at))
		if err != nil || len(allow.Queries) == 0 {
			return err
		}
		deny, err = e.mayDeny.Partial(ctx, rego.EvalParsedInput(value), rego.EvalTime(at))
		return err
	})
	if err != nil {
		return false, err
	}
	if len(allow.Queries) == 0 {
		return false, nil // allow is never true
	}
	for _, q := range deny.Queries {
		if !conditional(q) {
			return false, nil // a deny reason holds whatever the arguments
		}
	}
	return true, nil
}

// conditional says whether a query that partial evaluation left depends on
// what was unknown: it reads the input (the known input was put in place)
// or a support rule.
func conditional(q ast.Body) bool {
	found := false
	ast.WalkRefs(q, func(r ast.Ref) bool {
		if r.HasPrefix(ast.InputRootRef) || r.HasPrefix(supportRules) {
			found = true
		}
		return found
	})
	return found
}

func readResult(doc map[string]any) (Result, error) {
	var r Result
	switch a := doc["allow"].(type) {
	case nil:
	case bool:
		r.Allow, r.AllowDefined = a, true
	default:
		return r, fmt.Errorf("%w: allow is %T, not a boolean", ErrMalformedResult, a)
	}
	switch d := doc["deny"].(type) {
	case nil:
	case []any:
		for _, x := range d {
			s, ok := x.(string)
			if !ok {
				return r, fmt.Errorf("%w: deny holds a %T, not a reason string", ErrMalformedResult, x)
			}
			if strings.HasPrefix(s, "warden.") {
				return r, fmt.Errorf("%w: deny reason %q: reasons starting with \"warden.\" are Warden's own", ErrMalformedResult, s)
			}
			r.Deny = append(r.Deny, s)
		}
	default:
		return r, fmt.Errorf("%w: deny is %T, not a set of reason strings", ErrMalformedResult, d)
	}
	switch o := doc["obligations"].(type) {
	case nil:
	case map[string]any:
		r.Obligations = o
	default:
		return r, fmt.Errorf("%w: obligations is %T, not an object", ErrMalformedResult, o)
	}
	return r, nil
}
