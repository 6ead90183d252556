package mcpgw

import (
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/enforce"
)

// Redacted replaces a redacted value.
const Redacted = enforce.Redacted

// redactToolResult masks the fields in the structured result and in every
// text content that holds JSON.
func redactToolResult(res *mcp.CallToolResult, fields [][]string) {
	if res.StructuredContent != nil {
		res.StructuredContent = enforce.RedactValue(res.StructuredContent, fields)
	}
	for _, c := range res.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			t.Text = enforce.RedactJSON(t.Text, fields)
		}
	}
}
