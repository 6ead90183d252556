package mcpgw

import (
	"encoding/json"
	"reflect"
)

// ParseCall exposes parseCall to the tests: the id and the tool's name of
// a tools/call the fast path would take.
func ParseCall(body []byte) (json.RawMessage, string, bool) {
	c, ok := parseCall(body)
	return c.id, c.name, ok
}

// ParseCallBothWays reads body with the scanner and with encoding/json:
// scanned says whether the scanner read it (did not give up), same whether
// the two readings agree.
func ParseCallBothWays(body []byte) (scanned, same bool) {
	a, okA, err := scanCall(body)
	if err != nil {
		return false, true
	}
	b, okB := parseCallJSON(body)
	return true, okA == okB && reflect.DeepEqual(a, b)
}

// SDKOnly sends every request of g through the SDK's handler.
func SDKOnly(g *Gateway) { g.sdkOnly = true }

// FastPathReady says whether g's fast path takes calls in session sid.
func FastPathReady(g *Gateway, sid string) bool {
	s := g.agents.get(sid)
	return s != nil && s.ready.Load()
}

// RedactToolResult exposes redactToolResult to the tests.
func RedactToolResult(raw json.RawMessage, fields [][]string) (json.RawMessage, error) {
	return redactToolResult(raw, fields)
}
