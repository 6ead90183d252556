package mcpgw

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/enforce"
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

// agentSession is an MCP session of the SDK's handler, as the fast path
// knows it.
type agentSession struct {
	ss *mcp.ServerSession
	// used is when a request last named the session (Unix nanoseconds):
	// the gateway closes sessions idle for its session timeout, since the
	// SDK does not see the calls the fast path answers.
	used atomic.Int64
	// Set once the session is initialized: its agent and the protocol
	// version the agent asked for.
	ready   atomic.Bool
	agent   string
	version string
}

// agentSessions are the SDK handler's sessions, by id.
type agentSessions struct {
	mu sync.RWMutex
	m  map[string]*agentSession
}

func (t *agentSessions) get(id string) *agentSession {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.m[id]
}

// track adds a session of the SDK's, once; it is forgotten when it ends.
func (t *agentSessions) track(ss *mcp.ServerSession, now time.Time) *agentSession {
	id := ss.ID()
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.m[id]; s != nil {
		return s
	}
	s := &agentSession{ss: ss}
	s.used.Store(now.UnixNano())
	t.m[id] = s
	go func() {
		ss.Wait()
		t.mu.Lock()
		if t.m[id] == s {
			delete(t.m, id)
		}
		t.mu.Unlock()
	}()
	return s
}

// ending takes a session its agent is ending (DELETE) off the fast path at
// once; the SDK's handler closes it.
func (t *agentSessions) ending(id, agent string) {
	if s := t.get(id); s != nil && s.ready.Load() && s.agent == agent {
		s.ready.Store(false)
	}
}

// touch notes a request of agent that names session id: another agent's
// request (which the SDK's handler refuses) does not keep it open.
func (t *agentSessions) touch(id, agent string, now time.Time) {
	if s := t.get(id); s != nil && (!s.ready.Load() || s.agent == agent) {
		s.used.Store(now.UnixNano())
	}
}

// A session takes the fast path once its agent has said it is initialized.
// The gateway learns the session's agent and version when it answers
// initialize (opened), and puts it on the fast path when the SDK's handler
// accepts the agent's notifications/initialized (noteInitialized), before
// the agent hears back: its next call takes the fast path. The SDK runs
// the notification's handler (initialized) later, on its own time.

// opened records a session the SDK's handler opened for an agent: its
// agent and the protocol version agreed on.
func (g *Gateway) opened(req *mcp.ServerRequest[*mcp.InitializeParams], res mcp.Result) {
	ss, c := req.Session, callerOf(req)
	ir, ok := res.(*mcp.InitializeResult)
	if ss == nil || ss.ID() == "" || c == nil || !ok {
		return
	}
	s := g.agents.track(ss, time.Now())
	g.agents.mu.Lock()
	s.agent, s.version = c.Agent, ir.ProtocolVersion
	g.agents.mu.Unlock()
}

// initialized is the SDK's word that a session is initialized.
func (g *Gateway) initialized(req *mcp.InitializedRequest) {
	ss, c := req.Session, callerOf(req)
	if ss == nil || ss.ID() == "" || c == nil || ss.InitializeParams() == nil {
		return
	}
	s := g.agents.track(ss, time.Now())
	g.agents.mu.Lock()
	if s.agent == "" {
		s.agent, s.version = c.Agent, ss.InitializeParams().ProtocolVersion
	}
	g.agents.mu.Unlock()
	g.agents.setReady(ss.ID(), c.Agent)
}

func callerOf(req mcp.Request) *enforce.Caller {
	extra := req.GetExtra()
	if extra == nil || extra.TokenInfo == nil {
		return nil
	}
	c, _ := extra.TokenInfo.Extra[callerExtra].(*enforce.Caller)
	return c
}

// setReady puts session id of agent on the fast path.
func (t *agentSessions) setReady(id, agent string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.m[id]; s != nil && s.agent == agent && s.version != "" {
		s.ready.Store(true)
	}
}

// noteInitialized serves r when it is agent c's notifications/initialized
// for session sid, opened but not yet on the fast path, and puts the
// session on it once the SDK's handler has accepted the notification.
func (g *Gateway) noteInitialized(w http.ResponseWriter, r *http.Request, c *enforce.Caller, sid string, sdk http.Handler) bool {
	s := g.agents.get(sid)
	if r.Method != http.MethodPost || s == nil || s.ready.Load() {
		return false
	}
	g.agents.mu.RLock()
	mine := s.agent == c.Agent
	g.agents.mu.RUnlock()
	if !mine {
		return false
	}
	body, ok := g.readBody(r)
	if !ok {
		return false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var msg map[string]json.RawMessage
	if json.Unmarshal(body, &msg) != nil || string(msg["method"]) != `"notifications/initialized"` || msg["id"] != nil {
		return false
	}
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	sdk.ServeHTTP(rec, r)
	if rec.status == http.StatusAccepted {
		g.agents.setReady(sid, c.Agent)
	}
	return true
}

// statusRecorder keeps the status an HTTP handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// reap closes the sessions idle for the session timeout, every quarter of
// it, until the gateway closes.
func (g *Gateway) reap() {
	every := max(g.cfg.SessionTimeout/4, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-g.done:
			return
		case now := <-t.C:
			for ss := range g.server.Sessions() {
				if ss.ID() == "" {
					continue // the stateless handler's, closed after their request
				}
				s := g.agents.track(ss, now)
				if now.Sub(time.Unix(0, s.used.Load())) > g.cfg.SessionTimeout {
					g.lg.Debug("gateway: closing an idle session")
					ss.Close()
				}
			}
		}
	}
}

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
