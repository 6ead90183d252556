package mcpgw_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/enforce/mcpgw"
)

const ssn = "123-45-6789"

// mediaResult holds every kind of content a tool result may carry, each
// with the ssn policy redacts somewhere in it; the marker text is turned
// into a content type the gateway does not know (see unknownContent).
func mediaResult() *mcp.CallToolResult {
	size := int64(11)
	return &mcp.CallToolResult{
		Meta:              mcp.Meta{"ssn": ssn, "trace": "t-1"},
		StructuredContent: map[string]any{"name": "Ada", "ssn": ssn},
		Content: []mcp.Content{
			&mcp.TextContent{Text: `{"name":"Ada","ssn":"` + ssn + `"}`, Meta: mcp.Meta{"ssn": ssn}},
			&mcp.TextContent{Text: "Ada's ssn is " + ssn},
			&mcp.TextContent{Text: `{"unterminated": "` + ssn},
			&mcp.ImageContent{MIMEType: "image/png", Data: []byte("scan of " + ssn)},
			&mcp.AudioContent{MIMEType: "audio/wav", Data: []byte("say " + ssn)},
			&mcp.ResourceLink{URI: "docs://patients/" + ssn, Name: "patient " + ssn, Description: ssn, Size: &size},
			&mcp.EmbeddedResource{Resource: &mcp.ResourceContents{URI: "docs://a", MIMEType: "application/json", Text: `{"ssn":"` + ssn + `","ok":1}`}},
			&mcp.EmbeddedResource{Resource: &mcp.ResourceContents{URI: "docs://b", MIMEType: "application/pdf", Blob: []byte(ssn)}},
			&mcp.EmbeddedResource{Resource: &mcp.ResourceContents{URI: "docs://c", MIMEType: "text/plain", Text: "ssn " + ssn}},
			&mcp.TextContent{Text: unknownMarker},
		},
	}
}

// unknownMarker is replaced, in the upstream's answer, by a content item
// of a type no MCP version defines.
const unknownMarker = "UNKNOWN-CONTENT-HERE"

const unknownContent = `{"type":"hologram","payload":{"ssn":"` + ssn + `"}}`

// Under a redact obligation, every kind of content is either redacted or
// withheld: nothing that may hold the field passes as it was, whatever its
// type, on every path a call takes.
func TestRedactEveryContentType(t *testing.T) {
	paths(t, nil, func(t *testing.T, e *env) {
		s := e.connect(e.agent("ai-agent://dev/trader", "trader"), nil)
		r, err := s.CallTool(e.ctx, &mcp.CallToolParams{Name: "market__media"})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(r)
		if strings.Contains(string(b), ssn) || strings.Contains(string(b), `"type":"hologram"`) {
			t.Fatalf("the ssn or an unknown content type passed: %s", b)
		}
		if len(r.Content) != 10 {
			t.Fatalf("%d content items, want 10 (each redacted or withheld): %s", len(r.Content), b)
		}
		text := func(i int) string {
			t.Helper()
			c, ok := r.Content[i].(*mcp.TextContent)
			if !ok {
				t.Fatalf("content %d is a %T, want text: %s", i, r.Content[i], b)
			}
			return c.Text
		}
		if !strings.Contains(text(0), `"name":"Ada"`) || !strings.Contains(text(0), `"[redacted]"`) {
			t.Fatalf("JSON text is redacted, not withheld: %q", text(0))
		}
		for _, i := range []int{1, 2, 3, 4, 5, 9} {
			if !strings.HasPrefix(text(i), "[withheld") {
				t.Fatalf("content %d: %q, want it withheld", i, text(i))
			}
		}
		for _, i := range []int{7, 8} {
			if res, ok := r.Content[i].(*mcp.EmbeddedResource); !ok || len(res.Resource.Blob) != 0 || !strings.HasPrefix(res.Resource.Text, "[withheld") {
				t.Fatalf("content %d: a blob or prose resource is withheld: %s", i, b)
			}
		}
		res, ok := r.Content[6].(*mcp.EmbeddedResource)
		if !ok || !strings.Contains(res.Resource.Text, `"ok":1`) || !strings.Contains(res.Resource.Text, "[redacted]") {
			t.Fatalf("an embedded JSON resource is redacted: %s", b)
		}
		if sc, _ := json.Marshal(r.StructuredContent); !strings.Contains(string(sc), "Ada") {
			t.Fatalf("structured content is redacted, not withheld: %s", sc)
		}
		if r.Meta["trace"] != "t-1" {
			t.Fatalf("the result's _meta is redacted, not dropped: %v", r.Meta)
		}
	})
}

func TestRedactResourcesAndPrompts(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	c := e.agent("ai-agent://dev/reader", "reader")
	for _, version := range []string{"2025-11-25", ""} {
		s := e.connectAt(c, nil, version)
		rr, err := s.ReadResource(e.ctx, &mcp.ReadResourceParams{URI: "docs://records"})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(rr)
		if strings.Contains(string(b), ssn) || len(rr.Contents) != 3 || !strings.Contains(rr.Contents[0].Text, "Ada") ||
			len(rr.Contents[1].Blob) != 0 || !strings.HasPrefix(rr.Contents[1].Text, "[withheld") || !strings.HasPrefix(rr.Contents[2].Text, "[withheld") {
			t.Fatalf("resource contents: %s", b)
		}
		gp, err := s.GetPrompt(e.ctx, &mcp.GetPromptParams{Name: "docs__brief"})
		if err != nil {
			t.Fatal(err)
		}
		b, _ = json.Marshal(gp)
		if strings.Contains(string(b), ssn) || len(gp.Messages) != 4 || !strings.Contains(string(b), "risk") {
			t.Fatalf("prompt: %s", b)
		}
	}
}

// Whatever an upstream answers, a redacted tool result holds no value of
// the field outside "[redacted]", only content the gateway could redact,
// and no key it does not know.
func FuzzRedactToolResult(f *testing.F) {
	b, _ := json.Marshal(mediaResult())
	f.Add(string(b))
	f.Add(`{"content":[{"type":"text","text":"[{\"ssn\":1},{\"a\":{\"ssn\":[2]}}]"}],"extra":{"ssn":3}}`)
	f.Add(`{"content":[{"type":"resource","resource":{"uri":"x","text":"{\"ssn\":4}","blob":"AA=="}}]}`)
	f.Add(`{"content":{"type":"text"},"structuredContent":[{"ssn":5}]}`)
	f.Add(`{"content":[{"type":"text","text":"{}","annotations":{"note":"ssn 6","priority":1,"audience":["user","x"]}}]}`)
	f.Add(`{"content":[],"isError":{"ssn":7}}`)
	f.Add(`{"content":[],"resultType":["ssn",8]}`)
	f.Fuzz(func(t *testing.T, raw string) {
		out, err := mcpgw.RedactToolResult(json.RawMessage(raw), [][]string{{"ssn"}})
		if err != nil {
			return
		}
		var res map[string]any
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("not JSON: %s", out)
		}
		for _, x := range asList(res["content"]) {
			if ann, ok := x.(map[string]any)["annotations"].(map[string]any); ok {
				for k := range ann {
					if k != "audience" && k != "priority" && k != "lastModified" {
						t.Fatalf("an annotation %q passed: %s", k, out)
					}
				}
			}
		}
		if v, ok := res["isError"]; ok {
			if _, ok := v.(bool); !ok {
				t.Fatalf("isError passed as %T: %s", v, out)
			}
		}
		if v, ok := res["resultType"]; ok {
			if _, ok := v.(string); !ok {
				t.Fatalf("resultType passed as %T: %s", v, out)
			}
		}
		for k := range res {
			switch k {
			case "content", "structuredContent", "_meta", "isError", "resultType":
			default:
				t.Fatalf("an unknown key %q passed: %s", k, out)
			}
		}
		items, _ := res["content"].([]any)
		for _, x := range items {
			item := x.(map[string]any)
			switch item["type"] {
			case "text":
				noField(t, out, decodeIfJSON(item["text"]))
			case "resource":
				rc := item["resource"].(map[string]any)
				if _, ok := rc["blob"]; ok {
					t.Fatalf("a blob passed: %s", out)
				}
				noField(t, out, decodeIfJSON(rc["text"]))
			default:
				t.Fatalf("content of type %v passed: %s", item["type"], out)
			}
		}
		noField(t, out, res["structuredContent"])
		noField(t, out, res["_meta"])
	})
}

// decodeIfJSON is text decoded when it is JSON.
func decodeIfJSON(v any) any {
	s, _ := v.(string)
	var out any
	if json.Unmarshal([]byte(s), &out) == nil {
		return out
	}
	return nil
}

// noField fails when v holds the field "ssn" (a path from the root,
// through arrays element by element) with a value other than "[redacted]".
func noField(t *testing.T, out []byte, v any) {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		if e, ok := x["ssn"]; ok && e != mcpgw.Redacted {
			t.Fatalf("ssn %v passed: %s", e, out)
		}
	case []any:
		for _, e := range x {
			noField(t, out, e)
		}
	}
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}
