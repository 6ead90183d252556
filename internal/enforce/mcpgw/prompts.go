package mcpgw

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/enforce"
)

// Prompts: the upstreams' prompts as an agent may see them, and
// prompts/get decided and forwarded.

func (g *Gateway) listPrompts(ctx context.Context, c *enforce.Caller, r *mcp.ListPromptsRequest) (mcp.Result, error) {
	if err := g.charge(ctx, c, func(o catalogue) int { return len(o.prompts) }); err != nil {
		return nil, err
	}
	out := &mcp.ListPromptsResult{Prompts: []*mcp.Prompt{}}
	var starting []string
	for _, u := range g.order {
		offer, isStarting, err := u.listed(ctx)
		if isStarting {
			starting = append(starting, u.cfg.Name)
			continue
		}
		if err != nil {
			continue
		}
		for _, p := range offer.prompts {
			if !g.dec.MayAllow(ctx, g.request(c, mcpSession(r), u, "prompts/get", "mcp.prompt", u.cfg.Resource+"/"+p.Name, nil, nil)) {
				continue
			}
			cp := *p
			cp.Name = g.visible(u, p.Name)
			out.Prompts = append(out.Prompts, &cp)
		}
	}
	out.Meta = startingMeta(starting)
	return out, nil
}

func (g *Gateway) getPrompt(ctx context.Context, c *enforce.Caller, r *mcp.GetPromptRequest) (mcp.Result, error) {
	if err := checkHeaders(header(r), "prompts/get", r.Params.Name); err != nil {
		return nil, err
	}
	u, name, ok := g.split(r.Params.Name)
	if !ok {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("unknown prompt %q", r.Params.Name)}
	}
	args, _ := json.Marshal(r.Params.Arguments)
	argv, _ := decodeJSON(args).(map[string]any)
	d, err := g.decide(ctx, g.requestOf(c, mcpSession(r), u, "prompts/get", "mcp.prompt", u.cfg.Resource+"/"+name, nil, args, argv))
	if err != nil {
		return nil, err
	}
	fields, err := g.redactions(d)
	if err != nil {
		return nil, err
	}
	out, err := call(ctx, u, principal(c), func(ctx context.Context, s *mcp.ClientSession) (*mcp.GetPromptResult, error) {
		return s.GetPrompt(ctx, &mcp.GetPromptParams{Name: name, Arguments: r.Params.Arguments})
	})
	if err != nil {
		return nil, g.upstreamError(c, mcpSession(r), u, err, len(fields) > 0)
	}
	if len(fields) > 0 {
		if out, err = redactPrompt(out, fields); err != nil {
			return nil, g.unredactable(u, err)
		}
	}
	if g.cfg.Relayed != nil {
		n := len(out.Description)
		for _, m := range out.Messages {
			n += contentSize(m.Content)
		}
		g.cfg.Relayed(c.Agent, n)
	}
	if b, err := json.Marshal(out); err == nil {
		g.recorded(c, u, name, nil, d, b, argv)
	}
	return out, nil
}

// contentSize is the size of what one piece of content carries to the
// agent: its text, data or embedded resource.
func contentSize(c mcp.Content) int {
	switch c := c.(type) {
	case *mcp.TextContent:
		return len(c.Text)
	case *mcp.ImageContent:
		return len(c.Data)
	case *mcp.AudioContent:
		return len(c.Data)
	case *mcp.EmbeddedResource:
		if c.Resource != nil {
			return len(c.Resource.Text) + len(c.Resource.Blob)
		}
	}
	return 0
}
