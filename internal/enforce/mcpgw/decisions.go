package mcpgw

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/enforce"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/provenance"
	"github.com/warden-run/warden/internal/wire"
)

// Decisions: what the gateway asks the decision point, and how it turns
// the answer (and an upstream's failure) into what the agent is told.

// checkHeaders refuses a request whose Mcp-Method or Mcp-Name header names
// another method or name than its body: nothing is authorized on one name
// and executed on another, whatever the protocol version.
func checkHeaders(h http.Header, method, name string) error {
	if v := h.Get("Mcp-Method"); v != "" && v != method {
		return &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: fmt.Sprintf("the Mcp-Method header %q does not match the method %q", v, method)}
	}
	if v := h.Get("Mcp-Name"); v != "" && v != name {
		return &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: fmt.Sprintf("the Mcp-Name header %q does not match the name %q", v, name)}
	}
	return nil
}

// header is a request's HTTP header (nil when it did not come over HTTP).
func header(req mcp.Request) http.Header {
	if extra := req.GetExtra(); extra != nil {
		return extra.Header
	}
	return nil
}

// mcpSession is the id of a request's MCP session, "" when it has none.
func mcpSession(req mcp.Request) string {
	if s := req.GetSession(); s != nil {
		return s.ID()
	}
	return ""
}

// request builds a decision request for an action of c in MCP session sid
// on resource id of kind, from upstream u: the upstream's trust goes with
// the attributes, so that an allowed read of an untrusted one taints the
// agent.
func (g *Gateway) request(c *enforce.Caller, sid string, u *upstream, action, kind, id string, attrs map[string]any, args json.RawMessage) *decide.Request {
	argv, _ := decodeJSON(args).(map[string]any)
	return g.requestOf(c, sid, u, action, kind, id, attrs, args, argv)
}

// requestOf is request for arguments already decoded (argv, args'
// value), which it reads and never changes.
func (g *Gateway) requestOf(c *enforce.Caller, sid string, u *upstream, action, kind, id string, attrs map[string]any, args json.RawMessage, argv map[string]any) *decide.Request {
	if attrs == nil {
		attrs = make(map[string]any, 1)
	}
	if attrs["trust"] != Untrusted { // a tool of a trusted server may be untrusted itself, not the other way
		attrs["trust"] = u.cfg.Trust
	}
	dr := &decide.Request{Token: c.Token, Action: action, Resource: decide.Resource{Kind: kind, ID: id, Attributes: attrs}, Args: args,
		Context: decide.RequestContext{Source: decide.Source{IP: c.IP}, Session: decide.Session{ID: sid}}}
	if argv != nil {
		dr.Context.Provenance = g.prov.Session(c.Agent, "").Args(argv)
	}
	if g.proof != nil {
		var err error
		if dr.DPoP, dr.HTM, dr.HTU, err = g.proof(c.Token); err != nil {
			g.lg.Warn("gateway: cannot sign a DPoP proof for a decision", "err", err)
		}
	}
	return dr
}

// decide asks for a decision and turns anything but an allow into the
// JSON-RPC error the agent gets.
func (g *Gateway) decide(ctx context.Context, dr *decide.Request) (decide.Decision, error) {
	d, err := g.dec.Decide(ctx, dr)
	if err != nil {
		return d, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: err.Error()}
	}
	data, _ := json.Marshal(map[string]string{"decision_id": d.ID})
	switch {
	case d.Outcome == policy.Allow:
		return d, nil
	case d.ID == "":
		return d, &jsonrpc.Error{Code: CodeDenied, Message: "denied: no decision could be made"}
	case d.Outcome == policy.PendingApproval:
		return d, pendingError(d)
	default:
		return d, &jsonrpc.Error{Code: CodeDenied, Message: "denied by policy (decision " + d.ID + ")", Data: data}
	}
}

// redactions are the fields decision d says to redact. An obligation the
// gateway cannot read is a refusal, before anything is forwarded.
func (g *Gateway) redactions(d decide.Decision) ([][]string, error) {
	err := enforce.CheckObligations(d.Obligations, "redact")
	var fields [][]string
	if err == nil {
		fields, err = enforce.Redactions(d.Obligations)
	}
	if err != nil {
		g.lg.Warn("gateway: a decision's obligations cannot be applied; refused", "decision_id", d.ID, "err", err)
		data, _ := json.Marshal(map[string]string{"decision_id": d.ID})
		return nil, &jsonrpc.Error{Code: CodeDenied, Message: "denied: the obligations of decision " + d.ID + " cannot be applied", Data: data}
	}
	return fields, nil
}

// unredactable is what the agent is told when an answer of u that policy
// says to redact cannot be: nothing of it.
func (g *Gateway) unredactable(u *upstream, err error) error {
	g.lg.Warn("gateway: an answer could not be redacted; withheld", "upstream", u.cfg.Name, "err", err)
	return &jsonrpc.Error{Code: CodeUpstream, Message: "the answer of upstream " + u.cfg.Name + " could not be redacted as policy requires"}
}

// upstreamError is what agent c, in session sid, is told when upstream u
// failed. An error the upstream answered with is its own words: they
// reach the agent (the decision that allowed the call has tainted it, if
// the upstream is untrusted), unless the
// decision redacts what the upstream says, when only the code does.
func (g *Gateway) upstreamError(c *enforce.Caller, sid string, u *upstream, err error, redacted bool) error {
	var rpc *jsonrpc.Error
	if ownAnswer(err) && errors.As(err, &rpc) {
		if redacted {
			return &jsonrpc.Error{Code: rpc.Code, Message: "upstream " + u.cfg.Name + " answered with an error"}
		}
		// The agent reads the upstream's error as it reads a result.
		g.prov.Session(c.Agent, "").Record(provenance.Read{Upstream: u.cfg.Name, Tool: "error", Trust: readTrust(u, nil), AuditIndex: -1},
			rpc.Message+" "+string(rpc.Data), nil)
		return rpc
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	// What failed (addresses, commands) is in the log; the agent learns
	// only which server.
	return &jsonrpc.Error{Code: CodeUpstream, Message: "upstream " + u.cfg.Name + " unavailable"}
}

// canonicalArgs re-encodes a call's arguments, a JSON object or nothing,
// refusing one that names a member twice or two that differ only in case
// (wire.CheckKeys).
func canonicalArgs(raw json.RawMessage) (json.RawMessage, map[string]any, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil, nil
	}
	if err := wire.CheckKeys(raw); err != nil {
		return nil, nil, fmt.Errorf("arguments: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, nil, errors.New("arguments: must be a JSON object")
	}
	b, err := json.Marshal(m)
	return b, m, err
}

// split parses "<server>__<name>" (a wrap's names are the server's own).
func (g *Gateway) split(qualified string) (*upstream, string, bool) {
	if g.single != nil {
		return g.single, qualified, qualified != ""
	}
	server, name, ok := strings.Cut(qualified, separator)
	if !ok || name == "" {
		return nil, "", false
	}
	u, ok := g.ups[server]
	return u, name, ok
}

// visible is the name agents see for an upstream's tool or prompt.
func (g *Gateway) visible(u *upstream, name string) string {
	if g.single != nil {
		return name
	}
	return u.cfg.Name + separator + name
}

// charge takes a list's cost from the agent's rate limit before the list
// is made: each item it shows is decided (partially evaluated), so a list
// costs one request per item (the request itself paid for one). Without
// it, an agent listing a large catalog in a loop would spend many
// evaluations per request of its allowance.
func (g *Gateway) charge(ctx context.Context, c *enforce.Caller, items func(catalogue) int) error {
	if g.auth == nil || g.auth.Limits == nil {
		return nil
	}
	n := 0
	for _, u := range g.order {
		if offer, starting, err := u.listed(ctx); err == nil && !starting {
			n += items(offer)
		}
	}
	if n > 1 && !g.auth.Limits.AllowN(c.Agent, n-1) {
		return &jsonrpc.Error{Code: CodeLimit, Message: "rate limit exceeded: a list costs one request per item it decides; try again shortly"}
	}
	return nil
}

// startingMeta is a list's _meta when some upstreams are still starting:
// how many, so that an agent (or a person) knows the list is not whole
// yet, and lists again. Not their names: an agent that policy would show
// none of a server's tools does not learn that it exists.
func startingMeta(starting []string) mcp.Meta {
	if len(starting) == 0 {
		return nil
	}
	return mcp.Meta{StartingKey: len(starting)}
}

// StartingKey is the _meta key of a list that leaves out upstreams still
// starting.
const StartingKey = "warden/starting"

// pendingError is the answer to a call held for approval: the request to
// approve, and what the agent does next (the same call, unchanged, once it
// is approved; it runs once).
func pendingError(d decide.Decision) *jsonrpc.Error {
	msg := "approval required (decision " + d.ID + ")"
	data := map[string]any{"decision_id": d.ID}
	if a := d.Approval; a != nil {
		msg = fmt.Sprintf("approval required: request %s has %d of %d approvals and expires at %s; once it is approved, "+
			"send the same call with the same arguments again: it runs once (decision %s)", a.ID, a.Approvals, a.Needed, a.ExpiresAt, d.ID)
		data["approval"] = a
	}
	b, _ := json.Marshal(data)
	return &jsonrpc.Error{Code: CodeApprovalRequired, Message: msg, Data: b}
}

// argsProvenance says where each of args came from, among what the agent
// read through this gateway (nil when args are not an object).
// readTrust is the trust of what a tool (or a resource, prompt) of u
// returns: untrusted when its catalog attributes or its server say so.
func readTrust(u *upstream, attrs map[string]any) string {
	if attrs["trust"] == Untrusted || u.cfg.Trust == Untrusted {
		return provenance.Untrusted
	}
	return provenance.Trusted
}

// recorded notes a result relayed to c as a read (content, its JSON); the
// values of echo, the call's own arguments, are not the result's.
func (g *Gateway) recorded(c *enforce.Caller, u *upstream, tool string, attrs map[string]any, d decide.Decision, content json.RawMessage, echo map[string]any) {
	v := decodeJSON(content)
	if v == nil {
		return
	}
	g.prov.Session(c.Agent, "").Record(provenance.Read{Upstream: u.cfg.Name, Tool: tool, Trust: readTrust(u, attrs), AuditIndex: d.AuditIndex}, v, echo)
}

func decodeJSON(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return nil
	}
	return v
}
