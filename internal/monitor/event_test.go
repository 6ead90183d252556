package monitor_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/monitor"
)

// Who an entry is about, for the model: never an agent an unverified
// claim names, and for a delegated token, the actor.
func TestDecodeAttributesEntriesToWhoActed(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 5, 1, 0, 0, 0, time.UTC)
	const victim = "ai-agent://prod/finance/trader"
	cases := []struct {
		name  string
		entry audit.Entry
		agent string // "" for no event
		kind  monitor.EventKind
	}{
		{"an assertion anyone could forge names the agent", audit.Entry{Kind: audit.KindToken, Action: "token.issue", Outcome: "deny",
			Reasons: []string{"invalid_client", "bad_signature"}, Detail: json.RawMessage(`{"claimed_agent":"` + victim + `"}`)}, "", 0},
		{"an unknown key", audit.Entry{Kind: audit.KindToken, Action: "token.issue", Outcome: "deny",
			Reasons: []string{"invalid_client", "key_not_bound"}, Detail: json.RawMessage(`{"claimed_agent":"` + victim + `"}`)}, "", 0},
		{"the agent's own assertion, replayed", audit.Entry{Kind: audit.KindToken, Action: "token.issue", Outcome: "deny",
			Reasons: []string{"invalid_client", "replayed"}, Detail: json.RawMessage(`{"claimed_agent":"` + victim + `"}`)}, victim, monitor.EventAuthFailure},
		{"an issuer-signed token refused at an enforcement point", audit.Entry{Kind: audit.KindDecision, Action: "tools/call", Outcome: "deny",
			Reasons: []string{"warden.dpop_invalid"}, Detail: json.RawMessage(`{"claimed_agent":{"id":"` + victim + `","unverified":"warden.dpop_invalid"}}`)},
			victim, monitor.EventAuthFailure},
		{"a delegated token: the actor acts", audit.Entry{Kind: audit.KindDecision, Action: "tools/call", Outcome: "allow", Agent: victim,
			Input: json.RawMessage(`{"agent":{"roles":["trader"]},"context":{"delegation":["ai-agent://prod/finance/helper"]}}`)},
			"ai-agent://prod/finance/helper", monitor.EventDecision},
		{"an operator releases the agent", audit.Entry{Kind: audit.KindAdmin, Action: "agent.status", Target: victim, Outcome: "done",
			Detail: json.RawMessage(`{"status":"active","reason":"checked"}`)}, victim, monitor.EventReleased},
		{"the responder's own status change", audit.Entry{Kind: audit.KindResponse, Action: "agent.status", Target: victim, Outcome: "done",
			Detail: json.RawMessage(`{"status":"active"}`)}, "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := c.entry
			e.Time, e.Index = at, 9
			ev, ok := monitor.Decode(&e)
			if c.agent == "" {
				if ok {
					t.Fatalf("an event for %s", ev.Agent)
				}
				return
			}
			if !ok || ev.Agent != c.agent || ev.Kind != c.kind {
				t.Fatalf("event %+v (ok %v), want %s of kind %d", ev, ok, c.agent, c.kind)
			}
		})
	}
}
