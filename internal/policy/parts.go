package policy

import (
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// A Part is a part of an input already converted to the engine's values,
// by its place in the input ("agent", "context.provenance"). A part that
// many decisions share (an agent's identity, a constant block of context)
// is converted once, not in every evaluation: converting the input is a
// good share of a small policy's evaluation. Value must be what
// ast.InterfaceToValue makes of the input's value at Path, and that value
// must not change while the part is in use.
type Part struct {
	Path  string
	Value ast.Value
}

// toValue converts input to the engine's value, taking each part's value
// as it is given.
func toValue(input any, parts []Part) (ast.Value, error) {
	if len(parts) == 0 {
		return ast.InterfaceToValue(input)
	}
	return convertAt(input, "", parts)
}

// convertAt converts v, found at path (prefix of every part's path given,
// with a trailing dot unless at the top).
func convertAt(v any, path string, parts []Part) (ast.Value, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return ast.InterfaceToValue(v)
	}
	kvs := make([][2]*ast.Term, 0, len(m))
	for k, sub := range m {
		var val ast.Value
		var err error
		if p, ok := partAt(parts, path, k); ok {
			val = p
		} else if inner := partsUnder(parts, path, k); len(inner) > 0 {
			val, err = convertAt(sub, path+k+".", inner)
		} else {
			val, err = ast.InterfaceToValue(sub)
		}
		if err != nil {
			return nil, err
		}
		kvs = append(kvs, [2]*ast.Term{ast.StringTerm(k), ast.NewTerm(val)})
	}
	return ast.NewObject(kvs...), nil
}

// partAt is the part at exactly path+key.
func partAt(parts []Part, path, key string) (ast.Value, bool) {
	for _, p := range parts {
		if len(p.Path) == len(path)+len(key) && strings.HasPrefix(p.Path, path) && p.Path[len(path):] == key {
			return p.Value, true
		}
	}
	return nil, false
}

// partsUnder are the parts below path+key.
func partsUnder(parts []Part, path, key string) []Part {
	var out []Part
	for _, p := range parts {
		if rest, ok := strings.CutPrefix(p.Path, path); ok && len(rest) > len(key) && rest[:len(key)] == key && rest[len(key)] == '.' {
			out = append(out, p)
		}
	}
	return out
}
