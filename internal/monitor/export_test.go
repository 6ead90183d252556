package monitor

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// RandomEvents is a reproducible stream of n events of eight agents that
// touches every kind of event and signal, and fills the bounded sets.
func RandomEvents(seed uint64, n int) []Event {
	r := rand.New(rand.NewPCG(seed, 2))
	t := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	reasons := []string{"ticket_closed", "warden.not_allowed", "cross_trust_domain", "tainted_session_egress", "warden.state_unavailable"}
	out := make([]Event, 0, n)
	for i := 0; i < n; i++ {
		t = t.Add(time.Duration(r.IntN(300)) * time.Millisecond)
		a := r.IntN(8)
		ev := Event{Index: int64(i), Time: t, Kind: EventDecision, Agent: fmt.Sprintf("ai-agent://prod/team/agent-%d", a),
			Action: []string{"tools/call", "resources/read"}[r.IntN(2)], Resource: fmt.Sprintf("mcp.tool:t/%d", r.IntN(12)),
			Outcome: "allow", SourceIP: fmt.Sprintf("10.%d.0.1", r.IntN(4)), Roles: []string{fmt.Sprintf("role-%d", a%2)},
			ArgKeys: []string{fmt.Sprintf("k%d", r.IntN(5))}}
		// Now and then a rare resource or argument, so that the bounded
		// sets fill and evict.
		if r.IntN(5) == 0 {
			ev.Resource = fmt.Sprintf("mcp.tool:rare/%d", r.IntN(3000))
			ev.ArgKeys = []string{fmt.Sprintf("rare%d", r.IntN(2000))}
		}
		switch x := r.IntN(100); {
		case x < 10:
			ev.Outcome, ev.Reasons = "deny", []string{reasons[r.IntN(len(reasons))]}
		case x < 13:
			ev.Kind, ev.Outcome, ev.Reasons = EventAuthFailure, "deny", []string{"warden.dpop_invalid"}
		case x < 15:
			ev.Taints, ev.Egress = []string{"untrusted_content"}, true
		case x < 16:
			ev.Kind = EventReleased
		case x < 18:
			ev.Kind = EventTokenIssued
		}
		out = append(out, ev)
	}
	return out
}
