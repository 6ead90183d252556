package enforce

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// Limits bound what one agent, and all of them, can hold of an
// enforcement point's listener: connections, and the time a request may
// take to arrive and to be answered. Zero fields take the defaults.
type Limits struct {
	// MaxConnections bounds the open connections of the listener; past it,
	// new ones wait to be accepted. Default 4096.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerAgent bounds the connections one agent's requests
	// arrive on; a request on one more is refused (429) and its
	// connection closed. Default 64.
	MaxConnectionsPerAgent int `yaml:"max_connections_per_agent"`
	// MaxConnectionsPerSource bounds the connections open from one
	// address (IPv6: its /64), before anyone is authenticated on them;
	// one more is closed at once. Default 1024.
	MaxConnectionsPerSource int `yaml:"max_connections_per_source"`
	// BodyTimeout bounds the time a request body may take to arrive,
	// from the end of its headers. Default 30s.
	BodyTimeout time.Duration `yaml:"body_timeout"`
	// WriteTimeout bounds the time an answer may take, from the end of
	// the request's headers, except event streams. Default 2m.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// StreamTimeout bounds an event stream (an MCP session's stream, a
	// call's progress); the agent reconnects. Default 1h.
	StreamTimeout time.Duration `yaml:"stream_timeout"`
}

// WithDefaults fills the zero fields.
func (l Limits) WithDefaults() Limits {
	if l.MaxConnections == 0 {
		l.MaxConnections = 4096
	}
	if l.MaxConnectionsPerAgent == 0 {
		l.MaxConnectionsPerAgent = 64
	}
	if l.MaxConnectionsPerSource == 0 {
		l.MaxConnectionsPerSource = 1024
	}
	if l.BodyTimeout == 0 {
		l.BodyTimeout = 30 * time.Second
	}
	if l.WriteTimeout == 0 {
		l.WriteTimeout = 2 * time.Minute
	}
	if l.StreamTimeout == 0 {
		l.StreamTimeout = time.Hour
	}
	return l
}

// Conns counts the connections each agent's requests arrive on. A
// connection belongs to the first agent authenticated on it; its count
// drops when it closes. Connections no agent was authenticated on are not
// kept alive, and one address holds at most its share. Give the server
// ConnContext and ConnState, and wrap its handler with CloseUnclaimed.
type Conns struct {
	max, perSource int
	mu             sync.Mutex
	count          map[string]int // by agent
	sources        map[string]int // by address
	open           map[net.Conn]*conn
}

// NewConns allows each agent at most max connections, and each address
// perSource.
func NewConns(max, perSource int) *Conns {
	return &Conns{max: max, perSource: perSource, count: map[string]int{}, sources: map[string]int{}, open: map[net.Conn]*conn{}}
}

type connKey struct{}

// conn is what Conns knows of one connection.
type conn struct {
	agent  string
	source string
	done   bool
}

// ConnContext is the server's ConnContext: it tags each connection, and
// closes at once one that is its address's one too many.
func (c *Conns) ConnContext(ctx context.Context, nc net.Conn) context.Context {
	k := &conn{source: sourceOf(nc.RemoteAddr())}
	c.mu.Lock()
	c.open[nc] = k
	c.sources[k.source]++
	over := c.perSource > 0 && c.sources[k.source] > c.perSource
	c.mu.Unlock()
	if over {
		nc.Close() // the server sees the connection fail, and ConnState releases it
	}
	return context.WithValue(ctx, connKey{}, k)
}

// sourceOf is the address a connection's count goes to: the IP, or for
// IPv6 its /64 (one host may hold a whole /64).
func sourceOf(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	if ip4 := ta.IP.To4(); ip4 != nil {
		return ip4.String()
	}
	return ta.IP.Mask(net.CIDRMask(64, 128)).String()
}

// ConnState is the server's ConnState: a closed or hijacked connection
// no longer counts.
func (c *Conns) ConnState(nc net.Conn, state http.ConnState) {
	if state != http.StateClosed && state != http.StateHijacked {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.open[nc]
	if !ok {
		return
	}
	delete(c.open, nc)
	k.done = true
	if c.sources[k.source]--; c.sources[k.source] <= 0 {
		delete(c.sources, k.source)
	}
	if k.agent != "" {
		if c.count[k.agent]--; c.count[k.agent] <= 0 {
			delete(c.count, k.agent)
		}
	}
}

// Claim attributes the request's connection to agent, once. It reports
// false when the connection is the agent's one too many: the request is
// refused and the connection closed. A connection another agent claimed
// first carries this one's requests too (a client may pool connections
// for several agents); it counts for the first.
func (c *Conns) Claim(ctx context.Context, agent string) bool {
	k, ok := ctx.Value(connKey{}).(*conn)
	if !ok {
		return true // a connection this Conns does not track (a test's handler)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case k.done:
		return false
	case k.agent != "":
		return true
	case c.count[agent] >= c.max:
		return false
	}
	c.count[agent]++
	k.agent = agent
	return true
}

// Held says how many connections agent holds.
func (c *Conns) Held(agent string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count[agent]
}

// CloseUnclaimed wraps a server's handler: an answer on a connection no
// agent is authenticated on (a refusal, the resource metadata, an unknown
// path) closes it. A client without credentials cannot keep connections
// of the listener idle.
func (c *Conns) CloseUnclaimed(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k, ok := r.Context().Value(connKey{}).(*conn)
		if !ok {
			h.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(&closeUnclaimed{ResponseWriter: w, c: c, k: k}, r)
	})
}

type closeUnclaimed struct {
	http.ResponseWriter
	c     *Conns
	k     *conn
	wrote bool
}

func (w *closeUnclaimed) WriteHeader(status int) {
	if !w.wrote {
		w.wrote = true
		w.c.mu.Lock()
		unclaimed := w.k.agent == ""
		w.c.mu.Unlock()
		if unclaimed {
			w.Header().Set("Connection", "close")
		}
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *closeUnclaimed) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets streams through.
func (w *closeUnclaimed) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection.
func (w *closeUnclaimed) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Open is the number of connections open, claimed by an agent or not.
func (c *Conns) Open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.open)
}
