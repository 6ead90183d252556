package policy

import (
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/types"
)

// ConstantRules lists the rules the engine keeps for the life of its
// version: those that read no input and no clock.
func ConstantRules(e *Engine) []string { return keptRules(e, false) }

// KeyedRules lists the rules the engine keeps per value of the input they read.
func KeyedRules(e *Engine) []string { return keptRules(e, true) }

func keptRules(e *Engine, keyed bool) []string {
	var out []string
	for _, rs := range e.rules.rules {
		for _, r := range rs {
			if (len(r.inputs) > 0 || r.clock) == keyed {
				out = append(out, r.path)
			}
		}
	}
	slices.Sort(out)
	return out
}

// EngineModule is the engine's own query module.
const EngineModule = engineModule

// WithBlockingBuiltin adds to cfg a builtin test.block(x) that, like one
// call of a builtin over large data, does not return until it is done:
// it signals entered, then waits for release, then returns x.
func WithBlockingBuiltin(cfg EngineConfig, entered chan<- struct{}, release <-chan struct{}) EngineConfig {
	cfg.extraBuiltin = &extraBuiltin{
		fn: &rego.Function{Name: "test.block", Decl: types.NewFunction(types.Args(types.A), types.A)},
		impl: func(_ rego.BuiltinContext, x *ast.Term) (*ast.Term, error) {
			entered <- struct{}{}
			<-release
			return x, nil
		},
	}
	return cfg
}

// Overrunning is how many evaluations of e are still running past their timeout.
func Overrunning(e *Engine) int64 { return e.overrun.count() }

// MaxOverrun is how many evaluations of e may run past their timeout.
func MaxOverrun(e *Engine) int64 { return e.overrun.max }

// CheckFormat is the engine's check of a sprintf format.
var CheckFormat = checkFormat

// WithPanickingBuiltin adds to cfg a builtin test.panic(x) that panics,
// as a builtin might on some input.
func WithPanickingBuiltin(cfg EngineConfig) EngineConfig {
	cfg.extraBuiltin = &extraBuiltin{
		fn: &rego.Function{Name: "test.panic", Decl: types.NewFunction(types.Args(types.A), types.A)},
		impl: func(_ rego.BuiltinContext, x *ast.Term) (*ast.Term, error) {
			panic("a builtin panicked on " + x.String())
		},
	}
	return cfg
}

// KeptValues counts the values the engine keeps across its keyed rules.
func KeptValues(e *Engine) int {
	n := 0
	for _, rs := range e.rules.rules {
		for _, r := range rs {
			r.mu.Lock()
			n += len(r.values)
			r.mu.Unlock()
		}
	}
	return n
}
