package mcpgw

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Redacted replaces a redacted value.
const Redacted = "[redacted]"

// redactions reads the redact obligation: a list of field paths
// ("patient.ssn"). A malformed obligation redacts nothing it cannot read,
// but the decision has been made and recorded with it.
func redactions(obligations map[string]any) [][]string {
	list, _ := obligations["redact"].([]any)
	var out [][]string
	for _, f := range list {
		if s, ok := f.(string); ok && s != "" {
			out = append(out, strings.Split(s, "."))
		}
	}
	return out
}

// redactToolResult masks the fields in the structured result and in every
// text content that holds JSON.
func redactToolResult(res *mcp.CallToolResult, fields [][]string) {
	if res.StructuredContent != nil {
		// Through JSON, so that any Go value the SDK holds is walked alike.
		if b, err := json.Marshal(res.StructuredContent); err == nil {
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.UseNumber() // numbers as written, not as 64-bit floats
			var v any
			if dec.Decode(&v) == nil {
				for _, f := range fields {
					mask(v, f)
				}
				res.StructuredContent = v
			}
		}
	}
	for _, c := range res.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			t.Text = redactJSONText(t.Text, fields)
		}
	}
}

// redactJSONText masks the fields in text that is a JSON object or array,
// and returns any other text unchanged.
func redactJSONText(text string, fields [][]string) string {
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
