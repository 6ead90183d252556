package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// world is what the office tools hold: files, contacts, inboxes, pages,
// channels. Tasks put their content in it before they run; the tools answer
// from it, as real tools answer from their stores.
type world struct {
	mu       sync.Mutex
	files    map[string]string
	contacts map[string]contact
	inbox    map[string][]mail // by mailbox (the task)
	pages    map[string]string
	channels map[string][]string
	events   map[string][]string
}

type contact struct {
	Name  string `json:"name"`
	Email string `json:"email"`
	Phone string `json:"phone,omitempty"`
	IBAN  string `json:"iban,omitempty"`
}

type mail struct {
	From    string `json:"from"`
	Subject string `json:"subject"`
	Body    string `json:"body"`
}

func newWorld() *world {
	return &world{files: map[string]string{}, contacts: map[string]contact{}, inbox: map[string][]mail{}, pages: map[string]string{},
		channels: map[string][]string{}, events: map[string][]string{}}
}

func textResult(v any) *mcp.CallToolResult {
	s, ok := v.(string)
	if !ok {
		b, _ := json.Marshal(v)
		s = string(b)
	}
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}

func done(what string) *mcp.CallToolResult { return textResult(what) }

type args = map[string]any

func str(a args, k string) string { s, _ := a[k].(string); return s }

// servers are the office suites, each an MCP server.
func (w *world) servers() map[string]*mcp.Server {
	add := func(s *mcp.Server, name string, fn func(args) *mcp.CallToolResult) {
		mcp.AddTool(s, &mcp.Tool{Name: name}, func(_ context.Context, _ *mcp.CallToolRequest, a args) (*mcp.CallToolResult, any, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			return fn(a), nil, nil
		})
	}
	srv := func(name string) *mcp.Server {
		return mcp.NewServer(&mcp.Implementation{Name: name, Version: "1"}, nil)
	}
	files, contacts, calendar, payments, mailS, web, chat := srv("files"), srv("contacts"), srv("calendar"), srv("payments"), srv("mail"), srv("web"), srv("chat")
	add(files, "read_file", func(a args) *mcp.CallToolResult {
		if c, ok := w.files[str(a, "name")]; ok {
			return textResult(c)
		}
		return textResult("no such file")
	})
	add(files, "share", func(a args) *mcp.CallToolResult { return done("shared") })
	add(files, "delete", func(a args) *mcp.CallToolResult { return done("deleted") })
	add(contacts, "lookup", func(a args) *mcp.CallToolResult {
		if c, ok := w.contacts[strings.ToLower(str(a, "name"))]; ok {
			return textResult(c)
		}
		return textResult("no such contact")
	})
	add(calendar, "list_events", func(a args) *mcp.CallToolResult { return textResult(strings.Join(w.events[str(a, "day")], "\n")) })
	add(calendar, "create_event", func(a args) *mcp.CallToolResult { return done("event created, invitations sent") })
	add(payments, "pay", func(a args) *mcp.CallToolResult { return done(fmt.Sprintf("paid %v", a["amount"])) })
	add(mailS, "read_inbox", func(a args) *mcp.CallToolResult { return textResult(w.inbox[str(a, "folder")]) })
	add(mailS, "send", func(a args) *mcp.CallToolResult { return done("sent") })
	add(web, "fetch", func(a args) *mcp.CallToolResult {
		if p, ok := w.pages[str(a, "url")]; ok {
			return textResult(p)
		}
		return textResult("404")
	})
	add(chat, "read_channel", func(a args) *mcp.CallToolResult { return textResult(w.channels[str(a, "channel")]) })
	add(chat, "post", func(a args) *mcp.CallToolResult { return done("posted") })
	return map[string]*mcp.Server{"files": files, "contacts": contacts, "calendar": calendar, "payments": payments, "mail": mailS, "web": web, "chat": chat}
}

// handler serves every suite at /<suite>.
func (w *world) handler() http.Handler {
	mux := http.NewServeMux()
	for name, s := range w.servers() {
		s := s
		mux.Handle("/"+name, mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil))
	}
	return mux
}
