package mcpgw

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/enforce"
)

// The gateway keeps the MCP sessions of the SDK's handler: which agent
// owns each, at which protocol version, and when it was last used, since
// the SDK does not see the calls the fast path answers.
//
// A session takes the fast path once its agent has said it is initialized.
// The gateway learns the session's agent and version when it answers
// initialize (opened), and puts it on the fast path when the SDK's handler
// accepts the agent's notifications/initialized (noteInitialized), before
// the agent hears back: its next call takes the fast path. The SDK runs
// the notification's handler (initialized) later, on its own time.

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
	// owner is the agent whose request opened the session, as the HTTP
	// answer that named it showed: what the session caps count.
	owner string
}

// agentSessions are the SDK handler's sessions, by id, and how many each
// agent has open or is opening.
type agentSessions struct {
	mu      sync.RWMutex
	m       map[string]*agentSession
	owned   map[string]int // by owner
	opening map[string]int // requests that may open one, by agent
	total   int            // of opening
}

// init makes the tables.
func (t *agentSessions) init() {
	t.m, t.owned, t.opening = map[string]*agentSession{}, map[string]int{}, map[string]int{}
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
			if s.owner != "" {
				if t.owned[s.owner]--; t.owned[s.owner] <= 0 {
					delete(t.owned, s.owner)
				}
			}
		}
		t.mu.Unlock()
	}()
	return s
}

// reserve makes room for a session agent's request may open: at most
// perAgent of the agent's and total of all, counting those being opened.
// It returns why not, or how to give the room back once the request is
// answered (by then, a session it opened is owned).
func (t *agentSessions) reserve(agent string, perAgent, total int) (release func(), refusal *sessionRefusal) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.owned[agent]+t.opening[agent] >= perAgent:
		return nil, &sessionRefusal{status: http.StatusTooManyRequests,
			message: fmt.Sprintf("too many MCP sessions for this agent (at most %d): end one (DELETE) or let one idle out", perAgent)}
	case len(t.m)+t.total >= total:
		return nil, &sessionRefusal{status: http.StatusServiceUnavailable, message: "the gateway holds as many MCP sessions as it may; try again later"}
	}
	t.opening[agent]++
	t.total++
	var once sync.Once
	return func() {
		once.Do(func() {
			t.mu.Lock()
			defer t.mu.Unlock()
			if t.opening[agent]--; t.opening[agent] <= 0 {
				delete(t.opening, agent)
			}
			t.total--
		})
	}, nil
}

// own records that agent's request opened session ss.
func (t *agentSessions) own(ss *mcp.ServerSession, agent string, now time.Time) {
	s := t.track(ss, now)
	t.mu.Lock()
	defer t.mu.Unlock()
	if s.owner == "" && t.m[ss.ID()] == s {
		s.owner = agent
		t.owned[agent]++
	}
}

// sessionRefusal is why a request that may open a session was refused.
type sessionRefusal struct {
	status  int
	message string
}

// write answers the refused request: the HTTP status, and a JSON-RPC
// error the agent's client can show.
func (no *sessionRefusal) write(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Retry-After", "1")
	w.WriteHeader(no.status)
	b, _ := json.Marshal(rpcAnswer{JSONRPC: "2.0", ID: json.RawMessage("null"), Error: &jsonrpc.Error{Code: CodeLimit, Message: no.message}})
	w.Write(b)
}

// sessionOpening watches the answer to a request that may open a session,
// and has the session owned before the answer goes out.
type sessionOpening struct {
	http.ResponseWriter
	g     *Gateway
	agent string
	// release gives the reservation back once the session, if any, is
	// owned: the agent may ask for its next one as soon as it has the
	// answer.
	release func()
	done    bool
}

func (w *sessionOpening) WriteHeader(status int) {
	if !w.done {
		w.done = true
		if id := w.Header().Get("Mcp-Session-Id"); id != "" {
			for ss := range w.g.server.Sessions() {
				if ss.ID() == id {
					w.g.agents.own(ss, w.agent, time.Now())
					break
				}
			}
		}
		w.release()
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *sessionOpening) Write(b []byte) (int, error) {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets an event stream through.
func (w *sessionOpening) Flush() {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection.
func (w *sessionOpening) Unwrap() http.ResponseWriter { return w.ResponseWriter }

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
