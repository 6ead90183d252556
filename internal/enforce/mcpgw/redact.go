package mcpgw

import (
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/enforce"
)

// Redacted replaces a redacted value.
const Redacted = enforce.Redacted

// redactToolResult masks the fields in the structured result and in every
// text content that holds JSON. Text that looks like JSON but cannot be
// read is an error: nothing of the result may pass.
func redactToolResult(res *mcp.CallToolResult, fields [][]string) error {
	if res.StructuredContent != nil {
		res.StructuredContent = enforce.RedactValue(res.StructuredContent, fields)
	}
	for _, c := range res.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			var err error
			if t.Text, err = enforce.RedactJSON(t.Text, fields); err != nil {
				return err
			}
		}
	}
	return nil
}

// redactPrompt masks the fields in every text message of a prompt that
// holds JSON; a message of another kind cannot be redacted.
func redactPrompt(res *mcp.GetPromptResult, fields [][]string) error {
	for _, m := range res.Messages {
		t, ok := m.Content.(*mcp.TextContent)
		if !ok {
			return enforce.ErrCannotRedact
		}
		var err error
		if t.Text, err = enforce.RedactJSON(t.Text, fields); err != nil {
			return err
		}
	}
	return nil
}
