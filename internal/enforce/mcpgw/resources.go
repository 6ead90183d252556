package mcpgw

import (
	"context"
	"encoding/json"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/yosida95/uritemplate/v3"

	"github.com/warden-run/warden/internal/enforce"
)

// Resources: the upstreams' resources and templates as an agent may see
// them, and resources/read decided and forwarded.

func (g *Gateway) listResources(ctx context.Context, c *enforce.Caller, r *mcp.ListResourcesRequest) (mcp.Result, error) {
	if err := g.charge(ctx, c, func(o catalogue) int { return len(o.resources) }); err != nil {
		return nil, err
	}
	out := &mcp.ListResourcesResult{Resources: []*mcp.Resource{}}
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
		for _, res := range offer.resources {
			if g.dec.MayAllow(ctx, g.request(c, mcpSession(r), u, "resources/read", "mcp.resource", u.cfg.Resource+"/"+res.Name, nil, nil)) {
				out.Resources = append(out.Resources, res)
			}
		}
	}
	out.Meta = startingMeta(starting)
	return out, nil
}

func (g *Gateway) listTemplates(ctx context.Context, c *enforce.Caller, r *mcp.ListResourceTemplatesRequest) (mcp.Result, error) {
	if err := g.charge(ctx, c, func(o catalogue) int { return len(o.templates) }); err != nil {
		return nil, err
	}
	out := &mcp.ListResourceTemplatesResult{ResourceTemplates: []*mcp.ResourceTemplate{}}
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
		for _, t := range offer.templates {
			if g.dec.MayAllow(ctx, g.request(c, mcpSession(r), u, "resources/read", "mcp.resource", u.cfg.Resource+"/"+t.Name, nil, nil)) {
				out.ResourceTemplates = append(out.ResourceTemplates, t.ResourceTemplate)
			}
		}
	}
	out.Meta = startingMeta(starting)
	return out, nil
}

// owner finds the upstream that offers a resource URI: the first that
// lists it, else the first with a template that matches it. It returns the
// name policy knows it by, and for a template the values of its variables
// (and the URI) as the arguments.
func (g *Gateway) owner(ctx context.Context, uri string) (*upstream, string, json.RawMessage) {
	var offers []catalogue
	for _, u := range g.order {
		offer, err := u.offers(ctx)
		offers = append(offers, offer)
		if err != nil {
			continue
		}
		for _, res := range offer.resources {
			if res.URI == uri {
				return u, res.Name, nil
			}
		}
	}
	for i, u := range g.order {
		for _, t := range offers[i].templates {
			values := t.uri.Match(uri)
			if values == nil {
				continue
			}
			args := map[string]any{"uri": uri}
			for _, name := range t.uri.Varnames() {
				v := values.Get(name)
				if !v.Valid() {
					continue
				}
				switch v.T {
				case uritemplate.ValueTypeString:
					args[name] = v.String()
				case uritemplate.ValueTypeList:
					args[name] = v.List()
				case uritemplate.ValueTypeKV:
					args[name] = v.KV()
				}
			}
			raw, _ := json.Marshal(args)
			return u, t.Name, raw
		}
	}
	return nil, "", nil
}

func (g *Gateway) readResource(ctx context.Context, c *enforce.Caller, r *mcp.ReadResourceRequest) (mcp.Result, error) {
	if err := checkHeaders(header(r), "resources/read", r.Params.URI); err != nil {
		return nil, err
	}
	u, name, args := g.owner(ctx, r.Params.URI)
	if u == nil {
		return nil, mcp.ResourceNotFoundError(r.Params.URI)
	}
	argv, _ := decodeJSON(args).(map[string]any)
	d, err := g.decide(ctx, g.requestOf(c, mcpSession(r), u, "resources/read", "mcp.resource", u.cfg.Resource+"/"+name, nil, args, argv))
	if err != nil {
		return nil, err
	}
	fields, err := g.redactions(d)
	if err != nil {
		return nil, err
	}
	out, err := call(ctx, u, principal(c), func(ctx context.Context, s *mcp.ClientSession) (*mcp.ReadResourceResult, error) {
		return s.ReadResource(ctx, &mcp.ReadResourceParams{URI: r.Params.URI})
	})
	if err != nil {
		return nil, g.upstreamError(c, mcpSession(r), u, err, len(fields) > 0)
	}
	if len(fields) > 0 {
		if out, err = redactReadResult(out, fields); err != nil {
			return nil, g.unredactable(u, err)
		}
	}
	if g.cfg.Relayed != nil {
		n := 0
		for _, c := range out.Contents {
			n += len(c.Text) + len(c.Blob)
		}
		g.cfg.Relayed(c.Agent, n)
	}
	if b, err := json.Marshal(out); err == nil {
		g.recorded(c, u, name, nil, d, b, argv)
	}
	return out, nil
}
