package enforce

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Redacted replaces a redacted value.
const Redacted = "[redacted]"

// Redactions reads the redact obligation: a list of field paths
// ("patient.ssn"). Entries that are not strings are skipped; the decision
// was made and recorded with them.
func Redactions(obligations map[string]any) [][]string {
	list, _ := obligations["redact"].([]any)
	var out [][]string
	for _, f := range list {
		if s, ok := f.(string); ok && s != "" {
			out = append(out, strings.Split(s, "."))
		}
	}
	return out
}

// RedactValue masks the fields in a JSON-shaped value, going through JSON
// so that any Go value is walked alike; numbers keep their digits.
func RedactValue(v any, fields [][]string) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out any
	if dec.Decode(&out) != nil {
		return v
	}
	for _, f := range fields {
		mask(out, f)
	}
	return out
}

// RedactJSON masks the fields in text that is a JSON object or array, and
// returns any other text unchanged.
func RedactJSON(text string, fields [][]string) string {
	trimmed := strings.TrimSpace(text)
	if trimmed == "" || (trimmed[0] != '{' && trimmed[0] != '[') {
		return text
	}
	dec := json.NewDecoder(strings.NewReader(trimmed))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil || dec.More() {
		return text
	}
	for _, f := range fields {
		mask(v, f)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return text
	}
	return string(b)
}

// mask replaces the value at path in v; arrays on the way are walked
// element by element.
func mask(v any, path []string) {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			mask(e, path)
		}
	case map[string]any:
		child, ok := x[path[0]]
		if !ok {
			return
		}
		if len(path) == 1 {
			x[path[0]] = Redacted
			return
		}
		mask(child, path[1:])
	}
}
