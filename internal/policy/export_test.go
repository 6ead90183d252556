package policy

import "slices"

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
