package mcpgw

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/warden-run/warden/internal/enforce"
	"github.com/warden-run/warden/internal/provenance"
	"github.com/warden-run/warden/internal/tracing"
)

// Tools: the upstreams' tools as an agent may see them, and tools/call
// decided and forwarded.

func (g *Gateway) toolAttrs(u *upstream, tool string) map[string]any {
	a := u.cfg.Tools[tool]
	if a == nil {
		return nil
	}
	out := make(map[string]any, len(a))
	for k, v := range a {
		out[k] = v
	}
	return out
}

func (g *Gateway) listTools(ctx context.Context, c *enforce.Caller, r *mcp.ListToolsRequest) (mcp.Result, error) {
	if err := g.charge(ctx, c, func(o catalogue) int { return len(o.tools) }); err != nil {
		return nil, err
	}
	out := &mcp.ListToolsResult{Tools: []*mcp.Tool{}}
	// The descriptions of untrusted servers' tools are untrusted content
	// the agent reads (a description can carry an instruction).
	var untrusted []any
	var starting []string
	for _, u := range g.order {
		offer, isStarting, err := u.listed(ctx)
		if isStarting {
			starting = append(starting, u.cfg.Name)
			continue
		}
		if err != nil {
			continue // its tools are not listed while it is unavailable
		}
		for _, t := range offer.tools {
			attrs := g.toolAttrs(u, t.Name)
			if !g.dec.MayAllow(ctx, g.request(c, mcpSession(r), u, "tools/call", "mcp.tool", u.cfg.Resource+"/"+t.Name, attrs, nil)) {
				continue
			}
			cp := *t
			cp.Name = g.visible(u, t.Name)
			out.Tools = append(out.Tools, &cp)
			if readTrust(u, attrs) == provenance.Untrusted {
				untrusted = append(untrusted, t.Description, t.Title, decodeJSON(mustJSON(t.InputSchema)))
			}
		}
	}
	if len(untrusted) > 0 {
		g.prov.Session(c.Agent, "").Record(provenance.Read{Upstream: "tools/list", Tool: "tools/list", Trust: provenance.Untrusted, AuditIndex: -1}, untrusted, nil)
	}
	out.Meta = startingMeta(starting)
	return out, nil
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

func (g *Gateway) callTool(ctx context.Context, c *enforce.Caller, r *mcp.CallToolRequest) (mcp.Result, error) {
	var progress func(*mcp.ProgressNotificationParams)
	if token := r.Params.GetProgressToken(); token != nil && r.Session != nil {
		// The upstream's progress reaches the agent under the agent's token.
		progress = func(p *mcp.ProgressNotificationParams) {
			r.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Progress: p.Progress, Total: p.Total, Message: p.Message})
		}
	}
	raw, err := g.toolCall(ctx, c, header(r), mcpSession(r), r.Params.Name, r.Params.Arguments, progress)
	if err != nil {
		return nil, err
	}
	res := new(mcp.CallToolResult)
	if err := json.Unmarshal(raw, res); err != nil {
		return nil, &jsonrpc.Error{Code: CodeUpstream, Message: "upstream answer is not a tool result"}
	}
	return res, nil
}

// toolCall decides a tools/call of c in MCP session sid (h is its HTTP
// header) and forwards it. The result is the upstream's, redacted when the
// decision says so; progress, when not nil, gets the upstream's progress
// notifications.
func (g *Gateway) toolCall(ctx context.Context, c *enforce.Caller, h http.Header, sid, name string, rawArgs json.RawMessage, progress func(*mcp.ProgressNotificationParams)) (json.RawMessage, error) {
	ctx, span := tracer.Start(ctx, "mcp tools/call", trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(attribute.String("mcp.tool", name), attribute.String("warden.agent", c.Agent), attribute.String("warden.enforcement_point", g.cfg.Name))
	}
	if err := checkHeaders(h, "tools/call", name); err != nil {
		return nil, err
	}
	u, tool, ok := g.split(name)
	if !ok {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("unknown tool %q", name)}
	}
	// The upstream gets the arguments policy decided on, re-encoded: a key
	// given twice, which parsers may read differently, is given once.
	args, argv, err := canonicalArgs(rawArgs)
	if err != nil {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: err.Error()}
	}
	attrs := g.toolAttrs(u, tool)
	d, err := g.decide(ctx, g.requestOf(c, sid, u, "tools/call", "mcp.tool", u.cfg.Resource+"/"+tool, attrs, args, argv))
	if err != nil {
		return nil, err
	}
	// The agent's _meta stays here: it holds its own protocol version and
	// progress token, which are not the upstream session's. Progress
	// messages are free text: when the result is redacted, only the
	// figures are passed on.
	fields, err := g.redactions(d)
	if err != nil {
		return nil, err
	}
	if progress != nil {
		agent := progress
		progress = func(p *mcp.ProgressNotificationParams) {
			if len(fields) > 0 {
				p = &mcp.ProgressNotificationParams{Progress: p.Progress, Total: p.Total}
			}
			if p.Message != "" { // what the agent reads, as a result is
				g.prov.Session(c.Agent, "").Record(provenance.Read{Upstream: u.cfg.Name, Tool: tool, Trust: readTrust(u, attrs), AuditIndex: d.AuditIndex}, p.Message, argv)
			}
			agent(p)
		}
	}
	res, err := u.callTool(ctx, principal(c), tool, args, progress)
	if err != nil {
		return nil, g.upstreamError(c, sid, u, err, len(fields) > 0)
	}
	if len(fields) > 0 {
		if res, err = redactToolResult(res, fields); err != nil {
			return nil, g.unredactable(u, err)
		}
	}
	if g.cfg.Relayed != nil {
		g.cfg.Relayed(c.Agent, len(res))
	}
	g.recorded(c, u, tool, attrs, d, res, argv)
	return res, nil
}

// tracer makes the gateway's spans (no-ops unless tracing is on).
var tracer = tracing.Tracer()
