package mcpgw

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/enforce"
	"github.com/warden-run/warden/internal/jsonscan"
)

// The gateway answers the request agents send most, tools/call, without
// the SDK, on an initialized MCP session or under the sessionless protocol
// (2026-07-28): the request is read once, the few fields the decision
// needs are taken from it, and the upstream's result is passed back as it
// came (see relay.go). Everything else, and any tools/call that is not
// plainly one (a batch, an unknown session, a header or _meta the SDK
// would refuse, a body over the limit, a call that asks for progress),
// goes to the SDK's handler, which answers it as before.
// docs/design-notes.md says why.

// fastCall answers r when it is a tools/call the fast path takes, and
// returns false, with r as it was, when it is not.
func (g *Gateway) fastCall(w http.ResponseWriter, r *http.Request, c *enforce.Caller) bool {
	h := r.Header
	sid, version := h.Get("Mcp-Session-Id"), h.Get("Mcp-Protocol-Version")
	if g.sdkOnly || r.Method != http.MethodPost || len(h["Last-Event-Id"]) > 0 || rebinding(r) ||
		mediaType(h.Get("Content-Type")) != "application/json" || !acceptsBoth(h.Values("Accept")) {
		return false
	}
	// With a session: one the agent owns and initialized, at its version.
	// Without: the sessionless protocol, whose every request names its
	// method and tool in headers too.
	switch {
	case sid != "":
		s := g.agents.get(sid)
		if s == nil || !s.ready.Load() || s.agent != c.Agent || (version != "" && version != s.version) {
			return false
		}
	case version != sessionless || h.Get("Mcp-Method") != "tools/call" || h.Get("Mcp-Name") == "":
		return false
	}
	body, ok := g.readBody(r)
	if !ok {
		return false
	}
	call, ok := parseCall(body)
	if !ok || call.progress || (sid != "" && call.meta != nil) ||
		(sid == "" && (!call.meta.sessionless(version) || h.Get("Mcp-Name") != call.name)) {
		r.Body = io.NopCloser(bytes.NewReader(body))
		return false
	}
	res, err := g.toolCall(r.Context(), c, h, sid, call.name, call.args, nil)
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return true // the agent is gone
	}
	if sid == "" && err == nil {
		res, err = g.completeResult(res)
	}
	writeAnswer(w, call.id, res, err, sid == "")
	return true
}

// completeResult marks a result final and names the gateway in its _meta,
// as a server of the sessionless protocol does (SEP-2575).
func (g *Gateway) completeResult(res json.RawMessage) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(res, &m); err != nil {
		return nil, &jsonrpc.Error{Code: CodeUpstream, Message: "upstream answer is not a tool result"}
	}
	if _, ok := m["resultType"]; !ok {
		m["resultType"] = json.RawMessage(`"complete"`)
	}
	var meta map[string]json.RawMessage
	if raw, ok := m["_meta"]; ok && json.Unmarshal(raw, &meta) != nil {
		meta = nil
	}
	if meta == nil {
		meta = map[string]json.RawMessage{}
	}
	if _, ok := meta[mcp.MetaKeyServerInfo]; !ok {
		meta[mcp.MetaKeyServerInfo] = g.serverInfo
		b, _ := json.Marshal(meta)
		m["_meta"] = b
	}
	return json.Marshal(m)
}

// readBody reads a request body within the size limit. A body over it is
// left to the SDK's handler (which refuses it), with what was read put
// back.
func (g *Gateway) readBody(r *http.Request) ([]byte, bool) {
	limit := g.cfg.MaxRequestBytes
	if r.ContentLength > limit {
		return nil, false
	}
	if r.ContentLength > 0 {
		// The server holds the body to its Content-Length.
		body := make([]byte, r.ContentLength)
		n, err := io.ReadFull(r.Body, body)
		if err != nil {
			r.Body = io.NopCloser(bytes.NewReader(body[:n]))
			return nil, false
		}
		return body, true
	}
	b := new(bytes.Buffer)
	_, err := b.ReadFrom(io.LimitReader(r.Body, limit+1))
	body := b.Bytes()
	if err != nil || int64(len(body)) > limit {
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
		return nil, false
	}
	return body, true
}

// rpcCall is a tools/call the fast path takes.
type rpcCall struct {
	id   json.RawMessage
	name string
	args json.RawMessage
	// meta is what its _meta says of the sessionless protocol (nil when
	// nothing); progress, whether it asks for progress.
	meta     *newProtocolMeta
	progress bool
}

// newProtocolMeta is the _meta of a request of the sessionless protocol.
type newProtocolMeta struct {
	version string
	valid   bool // the capabilities are an object, the client info one when given
}

// sessionless says whether m is what a sessionless request at version
// must carry: that version, and the client's capabilities.
func (m *newProtocolMeta) sessionless(version string) bool {
	return m != nil && m.valid && m.version == version
}

// parseCall takes a JSON-RPC tools/call request apart, field names matched
// exactly. Anything else (a notification, a batch, another method, a
// request that selects the sessionless protocol in its _meta, or that asks
// for progress, which needs an event stream) is not one.
func parseCall(body []byte) (rpcCall, bool) {
	call, ok, err := scanCall(body)
	if err != nil {
		call, ok = parseCallJSON(body)
	}
	// A numeric id the SDK cannot read (1e999, out of float64's range) it
	// refuses; so does the fast path, by leaving the request to it.
	if ok && call.id[0] != '"' {
		if _, err := strconv.ParseFloat(string(call.id), 64); err != nil {
			return rpcCall{}, false
		}
	}
	return call, ok
}

// scanCall is parseCall in one pass over the body (jsonscan). It gives up
// (jsonscan.ErrGiveUp) on a member named twice, which encoding/json reads
// as the last, and on a value of a type parseCallJSON would refuse; both
// then read the body as parseCallJSON does (FuzzParseCall).
func scanCall(body []byte) (call rpcCall, ok bool, err error) {
	s := jsonscan.New(body)
	var version, method string
	var params bool
	err = s.Members([]string{"jsonrpc", "method", "id", "params"}, func(i int) (err error) {
		switch i {
		case 0:
			version, err = s.Str()
		case 1:
			method, err = s.Str()
		case 2:
			call.id, err = s.Raw()
		default:
			params = s.Next() == '{'
			err = s.Members([]string{"name", "arguments", "_meta"}, func(i int) (err error) {
				switch i {
				case 0:
					call.name, err = s.Str()
				case 1:
					call.args, err = s.Raw()
				default:
					call.meta, call.progress, err = scanMeta(s)
				}
				return err
			})
		}
		return err
	})
	if err != nil || !s.End() {
		return rpcCall{}, false, jsonscan.ErrGiveUp
	}
	id := call.id
	if version != "2.0" || method != "tools/call" || !params || call.name == "" ||
		len(id) == 0 || (id[0] != '"' && id[0] != '-' && (id[0] < '0' || id[0] > '9')) {
		return rpcCall{}, false, nil
	}
	return call, true, nil
}

// scanMeta reads a tools/call's _meta as parseCallJSON does: what it says
// of the sessionless protocol, and whether it asks for progress.
func scanMeta(s *jsonscan.Scanner) (meta *newProtocolMeta, progress bool, err error) {
	var version string
	var has [3]bool
	okVersion, okCaps, okInfo := true, false, false
	err = s.Members([]string{"progressToken", mcp.MetaKeyProtocolVersion, mcp.MetaKeyClientCapabilities, mcp.MetaKeyClientInfo},
		func(i int) (err error) {
			if i == 0 {
				progress = true
				return s.Skip()
			}
			has[i-1] = true
			switch c := s.Next(); {
			case i == 1 && (c == '"' || c == 'n'):
				version, err = s.Str()
				return err
			case i == 1:
				okVersion = false
			case i == 2:
				okCaps = c == '{'
			default:
				okInfo = c == '{'
			}
			return s.Skip()
		})
	if err != nil || !has[0] {
		return nil, progress, err
	}
	return &newProtocolMeta{version: version, valid: okVersion && has[1] && okCaps && (!has[2] || okInfo)}, progress, nil
}

// parseCallJSON is parseCall by encoding/json.
func parseCallJSON(body []byte) (rpcCall, bool) {
	var msg map[string]json.RawMessage
	if json.Unmarshal(body, &msg) != nil || msg == nil {
		return rpcCall{}, false
	}
	var version, method string
	if json.Unmarshal(msg["jsonrpc"], &version) != nil || version != "2.0" ||
		json.Unmarshal(msg["method"], &method) != nil || method != "tools/call" {
		return rpcCall{}, false
	}
	id := msg["id"]
	if len(id) == 0 || (id[0] != '"' && id[0] != '-' && (id[0] < '0' || id[0] > '9')) {
		return rpcCall{}, false
	}
	var params map[string]json.RawMessage
	if json.Unmarshal(msg["params"], &params) != nil || params == nil {
		return rpcCall{}, false
	}
	var call rpcCall
	if m, ok := params["_meta"]; ok {
		var meta map[string]json.RawMessage
		if json.Unmarshal(m, &meta) != nil {
			return rpcCall{}, false
		}
		_, call.progress = meta["progressToken"]
		if raw, ok := meta[mcp.MetaKeyProtocolVersion]; ok {
			call.meta = &newProtocolMeta{}
			var caps, info map[string]json.RawMessage
			capsRaw, hasCaps := meta[mcp.MetaKeyClientCapabilities]
			infoRaw, hasInfo := meta[mcp.MetaKeyClientInfo]
			call.meta.valid = json.Unmarshal(raw, &call.meta.version) == nil &&
				hasCaps && json.Unmarshal(capsRaw, &caps) == nil && caps != nil &&
				(!hasInfo || json.Unmarshal(infoRaw, &info) == nil && info != nil)
		}
	}
	if json.Unmarshal(params["name"], &call.name) != nil || call.name == "" {
		return rpcCall{}, false
	}
	call.id, call.args = id, params["arguments"]
	return call, true
}

type rpcAnswer struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *jsonrpc.Error  `json:"error,omitempty"`
}

// writeAnswer writes the JSON-RPC answer to request id. Under the
// sessionless protocol, an error for a request that names no such method
// is 404 and one for bad parameters 400 (SEP-2575).
func writeAnswer(w http.ResponseWriter, id, res json.RawMessage, err error, sessionless bool) {
	a := rpcAnswer{JSONRPC: "2.0", ID: id, Result: res}
	if err != nil {
		a.Result = nil
		if !errors.As(err, &a.Error) {
			a.Error = &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "internal error"}
		}
	}
	body, mErr := json.Marshal(a)
	if mErr != nil {
		body, _ = json.Marshal(rpcAnswer{JSONRPC: "2.0", ID: id, Error: &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "internal error"}})
	}
	w.Header().Set("Content-Type", "application/json")
	if sessionless && a.Error != nil {
		switch a.Error.Code {
		case jsonrpc.CodeMethodNotFound:
			w.WriteHeader(http.StatusNotFound)
		case jsonrpc.CodeInvalidParams:
			w.WriteHeader(http.StatusBadRequest)
		}
	}
	w.Write(body)
}

// acceptsBoth says whether an Accept header takes JSON and event streams,
// as Streamable HTTP requires of a POST.
func acceptsBoth(values []string) bool {
	var js, sse bool
	for _, v := range values {
		for len(v) > 0 {
			var part string
			part, v, _ = strings.Cut(v, ",")
			switch mediaType(part) {
			case "application/json", "application/*":
				js = true
			case "text/event-stream", "text/*":
				sse = true
			case "*/*":
				js, sse = true, true
			}
		}
	}
	return js && sse
}

// rebinding says whether r came to a loopback address under another host
// name (a DNS rebinding attempt, which the SDK's handler refuses).
func rebinding(r *http.Request) bool {
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok || local == nil || !loopback(local.String()) {
		return false
	}
	return !loopback(r.Host)
}

func loopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = strings.Trim(hostport, "[]")
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
