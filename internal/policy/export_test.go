package policy

import "slices"

// ConstantRules lists the rules the engine keeps for the life of its version.
func ConstantRules(e *Engine) []string {
	var out []string
	for _, rs := range e.consts.rules {
		for _, r := range rs {
			out = append(out, r.key)
		}
	}
	slices.Sort(out)
	return out
}

// EngineModule is the engine's own query module.
const EngineModule = engineModule
