package mcpgw

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/enforce"
)

// Agent sessions: an upstream reached over Streamable HTTP with sessions
// gets an MCP session of its own for each principal (an agent, or a
// delegate acting for a chain of agents, on a task: enforce.Caller's
// Principal), so that what one leaves in an upstream's session state (a
// login, a working directory, a cursor, a scratchpad) no other reads or
// changes. The gateway's own session keeps the lists and their change
// notifications. A command upstream is one process, and its state is
// every agent's.

const (
	// maxAgentSessions bounds the sessions an upstream holds for agents;
	// when it is reached, the one unused longest is closed.
	maxAgentSessions = 1024
	// agentIdle is how long an agent's session is kept without a call.
	agentIdle = 5 * time.Minute
	// sweepEvery is how often sessions idle too long are looked for.
	sweepEvery = time.Minute
)

// principal is whom c's calls are made as at upstreams.
func principal(c *enforce.Caller) string {
	if c.Principal != "" {
		return c.Principal
	}
	return c.Agent
}

// upstreamSession is an agent's session with an upstream.
type upstreamSession struct {
	ready chan struct{} // closed once s or err is set
	s     *mcp.ClientSession
	err   error
	users int       // calls on it now (under upstream.mu)
	used  time.Time // its last use (under upstream.mu)
}

// sessionFor returns the session the calls of agent (a principal) go on,
// and the function to call once the call is done. An upstream without
// sessions, or a command, has one session for all.
func (u *upstream) sessionFor(ctx context.Context, agent string) (*mcp.ClientSession, func(), error) {
	s, err := u.session(ctx)
	if err != nil {
		return nil, nil, err
	}
	if u.cfg.URL == "" || s.ID() == "" {
		return s, func() {}, nil
	}
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return nil, nil, fmt.Errorf("%w: %s: the gateway is closing", errUnavailable, u.cfg.Name)
	}
	as := u.agents[agent]
	if as == nil {
		// An upstream that just refused a session is not asked for
		// another at every call of every agent.
		if time.Since(u.agentFailed) < retryAfter {
			err := u.agentFailedErr
			u.mu.Unlock()
			return nil, nil, err
		}
		if len(u.agents) >= u.maxAgents && !u.evictLocked() {
			u.mu.Unlock()
			return nil, nil, fmt.Errorf("%w: %s: %d agents have calls in progress", errUnavailable, u.cfg.Name, u.maxAgents)
		}
		as = &upstreamSession{ready: make(chan struct{})}
		u.agents[agent] = as
		go u.connectAgent(agent, as)
		u.sweeping.Do(func() { go u.sweep() })
	}
	// Counted as a user while it connects, so that it is not evicted
	// before its first call.
	as.users++
	u.mu.Unlock()
	release := func() {
		u.mu.Lock()
		as.users--
		as.used = time.Now()
		u.mu.Unlock()
	}
	select {
	case <-as.ready:
	case <-ctx.Done():
		release()
		return nil, nil, ctx.Err()
	}
	if as.err != nil {
		release()
		return nil, nil, as.err
	}
	return as.s, release, nil
}

// connectAgent opens agent's session. It is not tied to the call that
// asked for it: others may be waiting for it too.
func (u *upstream) connectAgent(agent string, as *upstreamSession) {
	ctx, cancel := context.WithTimeout(context.Background(), min(u.timeout, 10*time.Second))
	defer cancel()
	// With its standalone stream, as the agent would have it: an upstream
	// answering in plain JSON sends its requests (a ping) there.
	tr := &mcp.StreamableClientTransport{Endpoint: u.cfg.URL, HTTPClient: u.http, MaxRetries: 1}
	s, err := u.client.Connect(ctx, tr, nil)
	u.mu.Lock()
	defer close(as.ready)
	defer u.mu.Unlock()
	if err == nil && (u.closed || u.agents[agent] != as) {
		// The gateway is closing, or no one waited for it and it was
		// evicted: nobody will use it.
		closeAll(s)
		as.err = fmt.Errorf("%w: %s: the session is no longer wanted", errUnavailable, u.cfg.Name)
		return
	}
	if err != nil {
		u.lg.Warn("upstream: cannot open a session for an agent", "agent", agent, "err", err)
		as.err = fmt.Errorf("%w: %s: %v", errUnavailable, u.cfg.Name, err)
		u.agentFailed, u.agentFailedErr = time.Now(), as.err
		if u.agents[agent] == as {
			delete(u.agents, agent)
		}
		return
	}
	as.s = s
}

// evictLocked closes the agent session unused longest, if one is not in
// use, and says whether it did.
func (u *upstream) evictLocked() bool {
	var oldest string
	var at time.Time
	for agent, as := range u.agents {
		if as.users == 0 && (oldest == "" || as.used.Before(at)) {
			oldest, at = agent, as.used
		}
	}
	if oldest == "" {
		return false
	}
	u.lg.Info("upstream: agent sessions at their bound; closing the one unused longest", "bound", u.maxAgents, "agent", oldest)
	closeAll(u.agents[oldest].s)
	delete(u.agents, oldest)
	return true
}

// sweep closes idle agent sessions every sweepEvery until the gateway
// closes.
func (u *upstream) sweep() {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-u.done:
			return
		case now := <-t.C:
			u.mu.Lock()
			u.sweepLocked(now)
			u.mu.Unlock()
		}
	}
}

// sweepLocked closes the agent sessions unused for agentIdle.
func (u *upstream) sweepLocked(now time.Time) {
	var idle []*mcp.ClientSession
	for agent, as := range u.agents {
		if as.users == 0 && now.Sub(as.used) > agentIdle {
			idle = append(idle, as.s)
			delete(u.agents, agent)
		}
	}
	closeAll(idle...)
}

// dropAgentLocked forgets the agent session s, which failed.
func (u *upstream) dropAgentLocked(s *mcp.ClientSession) {
	for agent, as := range u.agents {
		if as.s == s {
			delete(u.agents, agent)
		}
	}
}

// closeAll closes sessions in the background: closing one tells its
// upstream, which may be slow to answer, and no caller waits for it.
func closeAll(ss ...*mcp.ClientSession) {
	for _, s := range ss {
		if s != nil {
			go s.Close()
		}
	}
}

// closeAgents closes every agent session and waits a little for the
// upstream to hear of it.
func (u *upstream) closeAgents() {
	u.mu.Lock()
	var wg sync.WaitGroup
	for agent, as := range u.agents {
		delete(u.agents, agent)
		if s := as.s; s != nil {
			wg.Go(func() { s.Close() })
		}
	}
	u.mu.Unlock()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
}
