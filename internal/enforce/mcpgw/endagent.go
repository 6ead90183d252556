package mcpgw

import (
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// EndAgent ends the live MCP sessions of an agent that may no longer act
// (quarantined, disabled): its sessions with the gateway, and the sessions
// upstreams hold for it, alone or in a delegation chain. It returns how
// many sessions it ended. Every later request of the agent is refused by
// its decision anyway; this ends what it still holds open (event streams,
// upstream state).
func (g *Gateway) EndAgent(agent string) int {
	var ended []*mcp.ServerSession
	g.agents.mu.RLock()
	for _, s := range g.agents.m {
		if s.owner == agent || (s.ready.Load() && s.agent == agent) {
			ended = append(ended, s.ss)
		}
	}
	g.agents.mu.RUnlock()
	for _, ss := range ended {
		go ss.Close()
	}
	n := len(ended)
	for _, u := range g.order {
		n += u.endAgent(agent)
	}
	return n
}

// Agents lists the agents that hold MCP sessions with the gateway now.
func (g *Gateway) Agents() []string {
	seen := map[string]bool{}
	var out []string
	g.agents.mu.RLock()
	for _, s := range g.agents.m {
		for _, a := range []string{s.owner, s.agent} {
			if a != "" && !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	g.agents.mu.RUnlock()
	return out
}

// endAgent closes the sessions of principals agent is part of.
func (u *upstream) endAgent(agent string) int {
	u.mu.Lock()
	var ended []*mcp.ClientSession
	for p, as := range u.agents {
		if involves(p, agent) {
			ended = append(ended, as.s)
			delete(u.agents, p)
		}
	}
	u.mu.Unlock()
	closeAll(ended...)
	return len(ended)
}

// involves reports whether principal (an agent id, or "subject < actor <
// ... #task") names agent.
func involves(principal, agent string) bool {
	for _, f := range strings.Fields(principal) {
		if f == agent {
			return true
		}
	}
	return false
}

// Sessions is the number of MCP sessions open on the gateway's handler
// with sessions (protocol versions before 2026-07-28).
func (g *Gateway) Sessions() int {
	g.agents.mu.RLock()
	defer g.agents.mu.RUnlock()
	return len(g.agents.m)
}
