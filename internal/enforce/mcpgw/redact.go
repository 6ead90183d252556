package mcpgw

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/enforce"
)

// Redacted replaces a redacted value.
const Redacted = enforce.Redacted

// Under a redact obligation, an answer is rebuilt from what the gateway
// knows how to redact, and nothing else: JSON (structured content, text
// that is one JSON value, _meta objects) has the fields masked; whatever
// cannot be searched for them (prose, images, audio, blobs, resource
// links, content types the gateway does not know) is withheld, replaced by
// a text that says so; keys of the answer the gateway does not know are
// dropped. The answer is read as JSON, not through the SDK's types, so that
// nothing of it passes unseen.

// withheld is what replaces content that cannot be redacted.
func withheld(kind string) map[string]any {
	return map[string]any{"type": "text", "text": fmt.Sprintf("[withheld: %s content cannot be redacted as policy requires]", kind)}
}

// redactToolResult redacts a tools/call result.
func redactToolResult(raw json.RawMessage, fields [][]string) (json.RawMessage, error) {
	return redactObject(raw, fields, func(res map[string]any) (map[string]any, error) {
		out := map[string]any{"content": []any{}}
		for k, v := range res {
			switch k {
			case "content":
				items, err := redactContentList(v, fields)
				if err != nil {
					return nil, err
				}
				out[k] = items
			case "structuredContent", "_meta":
				out[k] = maskCopy(v, fields)
			case "isError":
				if _, ok := v.(bool); !ok {
					return nil, fmt.Errorf("%w: isError is not true or false", enforce.ErrCannotRedact)
				}
				out[k] = v
			case "resultType":
				if _, ok := v.(string); !ok {
					return nil, fmt.Errorf("%w: resultType is not a string", enforce.ErrCannotRedact)
				}
				out[k] = v
			}
		}
		return out, nil
	})
}

// redactReadResult redacts a resources/read result.
func redactReadResult(res *mcp.ReadResourceResult, fields [][]string) (*mcp.ReadResourceResult, error) {
	return redactVia(res, fields, func(m map[string]any) (map[string]any, error) {
		list, _ := m["contents"].([]any)
		out := make([]any, 0, len(list))
		for _, c := range list {
			rc, ok := c.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%w: a resource content is not an object", enforce.ErrCannotRedact)
			}
			out = append(out, redactResourceContents(rc, fields))
		}
		res := map[string]any{"contents": out}
		if meta, ok := m["_meta"]; ok {
			res["_meta"] = maskCopy(meta, fields)
		}
		return res, nil
	})
}

// redactPrompt redacts a prompts/get result: each message's content as a
// tool result's, and the prompt's description withheld (prose).
func redactPrompt(res *mcp.GetPromptResult, fields [][]string) (*mcp.GetPromptResult, error) {
	return redactVia(res, fields, func(m map[string]any) (map[string]any, error) {
		list, _ := m["messages"].([]any)
		out := make([]any, 0, len(list))
		for _, x := range list {
			msg, ok := x.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%w: a prompt message is not an object", enforce.ErrCannotRedact)
			}
			content, err := redactContent(msg["content"], fields)
			if err != nil {
				return nil, err
			}
			out = append(out, map[string]any{"role": msg["role"], "content": content})
		}
		res := map[string]any{"messages": out}
		if meta, ok := m["_meta"]; ok {
			res["_meta"] = maskCopy(meta, fields)
		}
		return res, nil
	})
}

// redactContentList redacts a list of content items.
func redactContentList(v any, fields [][]string) ([]any, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: content is not a list", enforce.ErrCannotRedact)
	}
	out := make([]any, 0, len(list))
	for _, item := range list {
		c, err := redactContent(item, fields)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// redactContent redacts one content item: JSON text and embedded text
// resources are masked; every other kind is withheld.
func redactContent(v any, fields [][]string) (map[string]any, error) {
	item, ok := v.(map[string]any)
	if !ok {
		return withheld("unreadable"), nil
	}
	kind, _ := item["type"].(string)
	switch kind {
	case "text":
		text, ok := item["text"].(string)
		if !ok {
			return withheld("text"), nil
		}
		masked, ok, err := redactText(text, fields)
		if err != nil {
			return nil, err
		}
		if !ok {
			return withheld("prose"), nil
		}
		out := map[string]any{"type": "text", "text": masked}
		keepAnnotated(out, item, fields)
		return out, nil
	case "resource":
		rc, ok := item["resource"].(map[string]any)
		if !ok {
			return withheld("resource"), nil
		}
		out := map[string]any{"type": "resource", "resource": redactResourceContents(rc, fields)}
		keepAnnotated(out, item, fields)
		return out, nil
	case "":
		return withheld("untyped"), nil
	default:
		// image, audio, resource_link, and anything newer.
		return withheld(kind), nil
	}
}

// redactResourceContents redacts a resource's contents: JSON text masked;
// prose and blobs withheld, as text.
func redactResourceContents(rc map[string]any, fields [][]string) map[string]any {
	out := map[string]any{"uri": rc["uri"]}
	if meta, ok := rc["_meta"]; ok {
		out["_meta"] = maskCopy(meta, fields)
	}
	text, isText := rc["text"].(string)
	if _, isBlob := rc["blob"]; !isBlob && isText {
		if masked, ok, err := redactText(text, fields); err == nil && ok {
			out["text"] = masked
			if mt, ok := rc["mimeType"]; ok {
				out["mimeType"] = mt
			}
			return out
		}
	}
	out["mimeType"] = "text/plain"
	out["text"] = "[withheld: this resource's content cannot be redacted as policy requires]"
	return out
}

// keepAnnotated copies an item's annotations the protocol defines
// (audience, a list of roles; priority, a number; lastModified, a time),
// and its _meta, masked. Anything else in the annotations is dropped: it
// is the upstream's, and could hold the fields.
func keepAnnotated(out, item map[string]any, fields [][]string) {
	if a, ok := item["annotations"].(map[string]any); ok {
		kept := map[string]any{}
		if roles, ok := a["audience"].([]any); ok {
			var rs []any
			for _, r := range roles {
				if r == "user" || r == "assistant" {
					rs = append(rs, r)
				}
			}
			kept["audience"] = rs
		}
		if p, ok := a["priority"].(json.Number); ok {
			kept["priority"] = p
		}
		if t, ok := a["lastModified"].(string); ok {
			if _, err := time.Parse(time.RFC3339Nano, t); err == nil {
				kept["lastModified"] = t
			}
		}
		if len(kept) > 0 {
			out["annotations"] = kept
		}
	}
	if meta, ok := item["_meta"]; ok {
		out["_meta"] = maskCopy(meta, fields)
	}
}

// redactText masks the fields in text that is one JSON value; ok is false
// for text that is not JSON (prose), which field paths cannot search.
func redactText(text string, fields [][]string) (string, bool, error) {
	trimmed := bytes.TrimSpace(bytes.TrimPrefix(bytes.TrimSpace([]byte(text)), []byte("\ufeff")))
	if len(trimmed) == 0 {
		return text, true, nil // nothing in it
	}
	if trimmed[0] != '{' && trimmed[0] != '[' {
		return "", false, nil
	}
	out, err := enforce.RedactDocument(trimmed, fields)
	if err != nil {
		return "", false, nil // it starts as JSON but is not: withheld
	}
	return string(out), true, nil
}

// maskCopy is v with the fields masked.
func maskCopy(v any, fields [][]string) any { return enforce.RedactValue(v, fields) }

// redactObject decodes raw as a JSON object (numbers as written), rebuilds
// it with f and encodes the result.
func redactObject(raw json.RawMessage, fields [][]string, f func(map[string]any) (map[string]any, error)) (json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, fmt.Errorf("%w: the answer is not a JSON object", enforce.ErrCannotRedact)
	}
	out, err := f(m)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", enforce.ErrCannotRedact, err)
	}
	return b, nil
}

// redactVia redacts an SDK result through its JSON.
func redactVia[T any](res *T, fields [][]string, f func(map[string]any) (map[string]any, error)) (*T, error) {
	raw, err := json.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", enforce.ErrCannotRedact, err)
	}
	out, err := redactObject(raw, fields, f)
	if err != nil {
		return nil, err
	}
	var t T
	if err := json.Unmarshal(out, &t); err != nil {
		return nil, fmt.Errorf("%w: %v", enforce.ErrCannotRedact, err)
	}
	return &t, nil
}
