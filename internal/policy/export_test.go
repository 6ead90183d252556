package policy

import "slices"

// ConstantRules lists the rules the engine keeps for the life of its version.
func ConstantRules(e *Engine) []string {
	var out []string
	for r := range e.consts.rules {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}
