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
// drops when it closes. Give the server ConnContext and ConnState.
type Conns struct {
	max   int
	mu    sync.Mutex
	count map[string]int
	open  map[net.Conn]*conn
}

// NewConns allows each agent at most max connections.
func NewConns(max int) *Conns {
	return &Conns{max: max, count: map[string]int{}, open: map[net.Conn]*conn{}}
}

type connKey struct{}

// conn is what Conns knows of one connection.
type conn struct {
	agent string
	done  bool
}

// ConnContext is the server's ConnContext: it tags each connection.
func (c *Conns) ConnContext(ctx context.Context, nc net.Conn) context.Context {
	k := &conn{}
	c.mu.Lock()
	c.open[nc] = k
	c.mu.Unlock()
	return context.WithValue(ctx, connKey{}, k)
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
