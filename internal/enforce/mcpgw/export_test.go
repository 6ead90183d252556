package mcpgw

import "encoding/json"

// ParseCall exposes parseCall to the tests: the id and the tool's name of
// a tools/call the fast path would take.
func ParseCall(body []byte) (json.RawMessage, string, bool) {
	c, ok := parseCall(body)
	return c.id, c.name, ok
}
