package monitor_test

import (
	"encoding/json"
	"reflect"
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

// DecodeLeaf reads an entry's stored bytes in one pass as Decode reads the
// entry, for every kind the model learns from and some it does not; an
// input of another shape than the model reads is refused, for the monitor
// to read the entry without it.
func TestDecodeLeafIsDecode(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 5, 1, 0, 0, 123, time.UTC)
	const a = "ai-agent://prod/finance/trader"
	input := `{"agent":{"roles":["trader","reader"]},"args":{"to":"x","amount":5},"resource":{"attributes":{"egress":true,"trust_domain":"partner"}},` +
		`"context":{"source":{"ip":"10.1.2.3","region":"eu"},"session":{"taints":["untrusted_content"]},"delegation":["ai-agent://prod/finance/helper"]}}`
	entries := []audit.Entry{
		{Kind: audit.KindDecision, Action: "tools/call", Outcome: "allow", Agent: a, Reasons: []string{},
			Resource: json.RawMessage(`{"id":"mail/send","kind":"mcp.tool"}`), Input: json.RawMessage(input)},
		{Kind: audit.KindDecision, Action: "tools/call", Outcome: "deny", Agent: a, Reasons: []string{"r"},
			Resource: json.RawMessage(`{"id":"kb/x","kind":"mcp.tool"}`)},
		{Kind: audit.KindDecision, Action: "tools/call", Outcome: "deny", Reasons: []string{"warden.dpop_invalid"},
			Resource: json.RawMessage(`{"id":"kb/x","kind":"mcp.tool"}`), Input: json.RawMessage(input),
			Detail: json.RawMessage(`{"claimed_agent":{"id":"` + a + `","unverified":"warden.dpop_invalid"},"source":"10.9.9.9"}`)},
		{Kind: audit.KindToken, Action: "token.issue", Outcome: "allow", Agent: a, Detail: json.RawMessage(`{"source":"10.1.2.3"}`)},
		{Kind: audit.KindToken, Action: "token.issue", Outcome: "deny", Reasons: []string{"invalid_client", "replayed"},
			Detail: json.RawMessage(`{"claimed_agent":"` + a + `"}`)},
		{Kind: audit.KindUsage, Action: "usage", Agent: a, Detail: json.RawMessage(`{"bytes":512}`)},
		{Kind: audit.KindAdmin, Action: "agent.status", Target: a, Outcome: "done", Detail: json.RawMessage(`{"status":"active"}`)},
		{Kind: audit.KindPolicy, Action: "policy.activate", Outcome: "done"},
	}
	for i, e := range entries {
		e.Time, e.Index = at, int64(i)
		leaf, err := e.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		stored, err := audit.DecodeEntry(leaf)
		if err != nil {
			t.Fatal(err)
		}
		want, wantOK := monitor.Decode(stored)
		got, ok, err := monitor.DecodeLeaf(leaf)
		if err != nil || ok != wantOK || !reflect.DeepEqual(got, want) {
			t.Errorf("entry %d: DecodeLeaf %+v %v %v, Decode %+v %v", i, got, ok, err, want, wantOK)
		}
	}
	// Arguments over the record's limit are recorded as a string: the rest
	// of the input is still read (an agent must not hide its source, roles
	// or taints by sending 64 KB).
	e := audit.Entry{Kind: audit.KindDecision, Action: "tools/call", Outcome: "allow", Agent: a, Time: at,
		Input: json.RawMessage(`{"agent":{"roles":["trader"]},"args":"[omitted: 70000 bytes, sha256:00]","context":{"source":{"ip":"10.1.2.3"},"session":{"taints":["t"]}}}`)}
	leaf, _ := e.Canonical()
	ev, ok, err := monitor.DecodeLeaf(leaf)
	if err != nil || !ok || ev.SourceIP != "10.1.2.3" || len(ev.Roles) != 1 || len(ev.Taints) != 1 || len(ev.ArgKeys) != 0 {
		t.Errorf("omitted arguments: %+v %v %v", ev, ok, err)
	}
	e = audit.Entry{Kind: audit.KindDecision, Action: "tools/call", Outcome: "allow", Agent: a, Time: at,
		Input: json.RawMessage(`{"agent":{"roles":"[redacted]"}}`)}
	leaf, _ = e.Canonical()
	if _, _, err := monitor.DecodeLeaf(leaf); err == nil {
		t.Error("an input of another shape was read")
	}
}

// BenchmarkDecodeEntry is the monitor's reading of one decision entry as
// the gateway records it (a 1.2 KB input): its fields, then its input, as
// two passes (audit.PeekEntry, Decode) or one (DecodeLeaf).
func BenchmarkDecodeEntry(b *testing.B) {
	in := map[string]any{"action": "tools/call", "agent": map[string]any{"id": "ai-agent://prod/bench/agent", "roles": []any{"bench"},
		"attributes": map[string]any{}, "owner": "team-bench", "path": []any{"bench", "agent"}, "status": "active", "trust_domain": "prod"},
		"args": map[string]any{"text": "hello"}, "resource": map[string]any{"id": "bench__echo", "kind": "mcp.tool",
			"attributes": map[string]any{"upstream": "bench", "trust": "trusted"}},
		"context": map[string]any{"time": "2026-12-05T10:00:00Z", "source": map[string]any{"ip": "127.0.0.1", "region": ""},
			"risk":    map[string]any{"score": 0, "level": "low", "signals": []any{}, "learning": true, "stale": false},
			"session": map[string]any{"id": "s-1", "task": "", "taints": []any{}, "taint_sources": []any{}},
			"grants":  []any{}, "delegation": []any{}, "approvals": []any{},
			"provenance": map[string]any{"known": true, "untrusted": []any{}, "unknown": []any{"text"}, "arguments": 1, "read_untrusted": false, "forgotten": false}}}
	raw, _ := audit.AppendCanonical(nil, in)
	e := audit.Entry{Kind: audit.KindDecision, Action: "tools/call", Outcome: "allow", Agent: "ai-agent://prod/bench/agent", Reasons: []string{},
		Resource: json.RawMessage(`{"id":"bench__echo","kind":"mcp.tool"}`), Input: raw, Time: time.Now(), Index: 7,
		InputDigest: "sha256:00", DecisionID: "dec_x", EnforcementPoint: "mcp-gateway", PolicyVersion: "v"}
	leaf, err := e.Canonical()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("peek+decode", func(b *testing.B) {
		for b.Loop() {
			e, _ := audit.PeekEntry(leaf)
			monitor.Decode(e)
		}
	})
	b.Run("leaf", func(b *testing.B) {
		for b.Loop() {
			monitor.DecodeLeaf(leaf)
		}
	})
}
