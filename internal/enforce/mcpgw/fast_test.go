package mcpgw_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/enforce/mcpgw"
)

// rpcAnswer is a JSON-RPC answer as the gateway sends it.
type rpcAnswer struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int64           `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	} `json:"error"`
}

// The gateway answers a tools/call on an initialized session itself, with
// plain JSON; anything it does not take plainly (a batch, a call before
// initialization, an unknown or another agent's session, a request that
// asks for the sessionless protocol) is answered by the SDK's handler as
// before.
func TestFastPath(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	token := func(id, role string) string {
		tok, err := e.agent(id, role).Token(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		return tok.AccessToken
	}
	trader, intruder := token("ai-agent://dev/trader", "trader"), token("ai-agent://dev/intruder", "trader")
	resp := post(t, e.url, http.Header{"Authorization": {"Bearer " + trader}}, strings.Replace(initialize, "2025-06-18", "2025-11-25", 1))
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != 200 || sid == "" {
		t.Fatalf("initialize: %d, session %q", resp.StatusCode, sid)
	}
	h := func(tok string, extra ...string) http.Header {
		h := http.Header{"Authorization": {"Bearer " + tok}, "Mcp-Session-Id": {sid}, "Mcp-Protocol-Version": {"2025-11-25"}}
		for i := 0; i+1 < len(extra); i += 2 {
			h.Set(extra[i], extra[i+1])
		}
		return h
	}
	call := func(id, name, args string) string {
		return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"` + name + `","arguments":` + args + `}}`
	}
	order := call(`"o-1"`, "market__place_order", `{"symbol":"ACME","quantity":10}`)
	// answer reads a plain JSON answer: the fast path's.
	answer := func(resp *http.Response) rpcAnswer {
		t.Helper()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("status %d, %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		var a rpcAnswer
		if err := json.Unmarshal(body, &a); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		return a
	}

	// Before notifications/initialized, the SDK answers (with its stream).
	if resp := post(t, e.url, h(trader), order); resp.Header.Get("Content-Type") == "application/json" && resp.StatusCode == 200 {
		t.Fatal("a call before initialization took the fast path")
	}
	if resp := post(t, e.url, h(trader), `{"jsonrpc":"2.0","method":"notifications/initialized"}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("initialized: %d", resp.StatusCode)
	}
	if !mcpgw.FastPathReady(e.gw, sid) {
		t.Fatal("the session is initialized, but not on the fast path")
	}
	a := answer(post(t, e.url, h(trader), order))
	var res mcp.CallToolResult
	if err := json.Unmarshal(a.Result, &res); err != nil || string(a.ID) != `"o-1"` || a.Error != nil ||
		len(res.Content) != 1 || res.Content[0].(*mcp.TextContent).Text != "ordered 10 ACME" {
		t.Fatalf("answer %+v %s", a, a.Result)
	}
	// A refusal: the generic error with the decision id, the reasons in the audit log.
	a = answer(post(t, e.url, h(trader), call("7", "market__place_order", `{"symbol":"ACME","quantity":5000}`)))
	if a.Error == nil || a.Error.Code != mcpgw.CodeDenied || string(a.ID) != "7" || strings.Contains(a.Error.Message, "order_too_large") {
		t.Fatalf("denied call: %+v", a)
	}
	var data struct {
		DecisionID string `json:"decision_id"`
	}
	json.Unmarshal(a.Error.Data, &data)
	if en := e.entry(data.DecisionID); en == nil || en.Reasons[0] != "order_too_large" {
		t.Fatalf("audit entry %+v", en)
	}
	// Arguments that are not an object, an unknown tool, a name the header contradicts.
	for _, c := range []struct {
		body   string
		header []string
		code   int64
	}{
		{call("8", "market__place_order", `[1,2]`), nil, -32602},
		{call("9", "nowhere__x", `{}`), nil, -32602},
		{call("10", "market__place_order", `{"symbol":"ACME","quantity":1}`), []string{"Mcp-Name", "market__get_quote"}, -32600},
	} {
		if a := answer(post(t, e.url, h(trader, c.header...), c.body)); a.Error == nil || a.Error.Code != c.code {
			t.Errorf("%s: %+v", c.body, a)
		}
	}
	// What the fast path leaves to the SDK, which answers as it always did.
	for _, c := range []struct {
		name   string
		h      http.Header
		body   string
		status int
	}{
		{"another agent's token", h(intruder), order, http.StatusForbidden},
		{"an unknown session", h(trader, "Mcp-Session-Id", "no-such-session"), order, http.StatusNotFound},
		{"a batch", h(trader), "[" + order + "]", http.StatusBadRequest},
		{"a body over the limit", h(trader), call("11", "market__get_quote", `{"symbol":"`+strings.Repeat("x", 70<<10)+`"}`), http.StatusRequestEntityTooLarge},
		{"no event streams accepted", h(trader, "Accept", "application/json"), order, http.StatusBadRequest},
		{"the sessionless protocol asked in _meta", h(trader), strings.Replace(order, `"arguments"`, `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"},"arguments"`, 1), http.StatusBadRequest},
		// (status 200: the SDK's event stream)
		{"progress asked", h(trader), strings.Replace(order, `"arguments"`, `"_meta":{"progressToken":"p"},"arguments"`, 1), http.StatusOK},
	} {
		resp := post(t, e.url, c.h, c.body)
		if resp.StatusCode != c.status || (c.status == http.StatusOK && resp.Header.Get("Content-Type") != "text/event-stream") {
			body, _ := io.ReadAll(resp.Body)
			t.Errorf("%s: status %d, want %d: %s", c.name, resp.StatusCode, c.status, body)
		}
	}
	// Ended by the agent: the session is gone for the fast path too.
	req, _ := http.NewRequest(http.MethodDelete, e.url, nil)
	req.Header = h(trader)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %v %v", resp, err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		resp := post(t, e.url, h(trader), order)
		if resp.StatusCode == http.StatusNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a call in an ended session: %d", resp.StatusCode)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The gateway closes sessions idle for its session timeout; calls the fast
// path answers keep a session alive.
func TestIdleSessionsClose(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *mcpgw.Config, _ *mcpgw.Deps) { c.SessionTimeout = 400 * time.Millisecond })
	s := e.connectAt(e.agent("ai-agent://dev/reader", "reader"), nil, "2025-11-25")
	quote := func() error {
		_, err := s.CallTool(e.ctx, &mcp.CallToolParams{Name: "market__get_quote", Arguments: quoteArgs{"ACME"}})
		return err
	}
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if err := quote(); err != nil {
			t.Fatalf("a session in use was closed: %v", err)
		}
	}
	time.Sleep(time.Second)
	if err := quote(); err == nil {
		t.Fatal("an idle session is still open")
	}
	if e.plainCalls.Load() == 0 {
		t.Fatal("no call took the fast path")
	}
}

// A call that asks for progress gets the upstream's progress, under its own
// token, before its result (on a session, through the SDK's handler: the
// gateway's own answers are plain JSON, without a stream to send it on).
func TestProgressReachesTheAgent(t *testing.T) {
	t.Parallel()
	for _, version := range []string{"2025-11-25", ""} {
		e := start(t, nil)
		e.version = version
		var mu sync.Mutex
		var got []string
		e.progress = func(p *mcp.ProgressNotificationParams) {
			mu.Lock()
			got = append(got, fmt.Sprintf("%v %v/%v %s", p.ProgressToken, p.Progress, p.Total, p.Message))
			mu.Unlock()
		}
		s := e.connect(e.agent("ai-agent://dev/reader", "reader"), nil)
		params := &mcp.CallToolParams{Name: "docs__report"}
		params.SetProgressToken("agent-token")
		r, err := s.CallTool(e.ctx, params)
		if err != nil || text(t, r) != "reported" {
			t.Fatalf("%s: %v %v", version, r, err)
		}
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			mu.Lock()
			n := len(got)
			mu.Unlock()
			if n >= 2 || time.Now().After(deadline) {
				break
			}
		}
		mu.Lock()
		if strings.Join(got, ", ") != "agent-token 1/2 step 1, agent-token 2/2 step 2" {
			t.Errorf("%s: progress %q", version, got)
		}
		mu.Unlock()
	}
}

// Many agents at once, each on its own session: every call is answered
// with its own result, and each is decided once.
func TestFastPathConcurrent(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	const agents, calls = 6, 15
	var wg sync.WaitGroup
	errs := make(chan error, agents*calls)
	for a := range agents {
		s := e.connectAt(e.agent(fmt.Sprintf("ai-agent://dev/trader-%d", a), "trader"), nil, "2025-11-25")
		wg.Go(func() {
			for i := range calls {
				q := 1 + a*100 + i
				r, err := s.CallTool(e.ctx, &mcp.CallToolParams{Name: "market__place_order", Arguments: orderArgs{"ACME", q}})
				if err != nil {
					errs <- err
					return
				}
				if got, want := r.Content[0].(*mcp.TextContent).Text, fmt.Sprintf("ordered %d ACME", q); got != want {
					errs <- fmt.Errorf("agent %d got %q, want %q", a, got, want)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := e.plainCalls.Load(); n != agents*calls {
		t.Errorf("%d of %d calls took the fast path", n, agents*calls)
	}
}

// The fast path reads a tools/call as clients send it in one pass, and
// gives up only where encoding/json might read it otherwise.
func TestParseCallScans(t *testing.T) {
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b","arguments":{"x":1}}}`,
		`{"method":"tools/call","params":{"_meta":{"progressToken":"p"},"name":"a__b"},"jsonrpc":"2.0","id":"7"}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",` +
			`"io.modelcontextprotocol/clientCapabilities":{}}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`,
	} {
		if scanned, same := mcpgw.ParseCallBothWays([]byte(body)); !scanned || !same {
			t.Errorf("%s: scanned %v, read as encoding/json reads it %v", body, scanned, same)
		}
	}
	// An id out of float64's range, which the SDK refuses, is left to it.
	if _, _, ok := mcpgw.ParseCall([]byte(`{"jsonrpc":"2.0","id":1e999,"method":"tools/call","params":{"name":"a__b"}}`)); ok {
		t.Error("the fast path took an id the SDK refuses")
	}
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b"},"params":{"name":"c__d"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b","name":"c__d"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"x"}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b"}} x`,
	} {
		if scanned, _ := mcpgw.ParseCallBothWays([]byte(body)); scanned {
			t.Errorf("%s: scanned", body)
		}
	}
}

// Whatever the body, parseCall does not panic, and what it takes is a
// JSON-RPC 2.0 tools/call with an id and a tool name.
func FuzzParseCall(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b","arguments":{"x":1}}}`,
		`{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"a__b","_meta":{"progressToken":1}}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b"}}]`,
		`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a__b"}}`,
		`{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":""}}`,
		` { "jsonrpc" : "2.0" , "id" : -7 , "method" : "tools/call" , "params" : { "arguments" : { "a" : [ 1 ] } , "name" : "a\u005f_b" } } `,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",` +
			`"io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"c","version":"1"}}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b","_meta":{"io.modelcontextprotocol/protocolVersion":7,` +
			`"io.modelcontextprotocol/clientCapabilities":null,"io.modelcontextprotocol/clientInfo":[]}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b"},"params":{"name":"c__d"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b","arguments":{"x":1},"arguments":null}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",` +
			`"io.modelcontextprotocol/clientCapabilities":null}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b","_meta":{"io.modelcontextprotocol/protocolVersion":null,` +
			`"io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":"c"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",` +
			`"io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":[]}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b","_meta":{"io.modelcontextprotocol/protocolVersion":null,` +
			`"io.modelcontextprotocol/clientCapabilities":{}}}}`,
		`null`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, same := mcpgw.ParseCallBothWays(body); !same {
			t.Fatalf("%s: the scanner and encoding/json read it otherwise", body)
		}
		id, name, ok := mcpgw.ParseCall(body)
		if !ok {
			return
		}
		var msg map[string]json.RawMessage
		var version, method string
		err := json.Unmarshal(body, &msg)
		if err == nil {
			json.Unmarshal(msg["jsonrpc"], &version)
			json.Unmarshal(msg["method"], &method)
		}
		if err != nil || version != "2.0" || method != "tools/call" || len(id) == 0 || name == "" {
			t.Fatalf("took %s (%v)", body, err)
		}
	})
}

// Under the sessionless protocol the gateway answers a tools/call itself
// when the request is what that protocol asks for (its version in the
// header and in _meta, the client's capabilities, Mcp-Method and Mcp-Name),
// and marks the result final with its own name, as the SDK would; the SDK
// answers the rest.
func TestFastPathSessionless(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	tok, err := e.agent("ai-agent://dev/trader", "trader").Token(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := func(extra ...string) http.Header {
		h := http.Header{"Authorization": {"Bearer " + tok.AccessToken}, "Mcp-Protocol-Version": {"2026-07-28"},
			"Mcp-Method": {"tools/call"}, "Mcp-Name": {"market__place_order"}}
		for i := 0; i+1 < len(extra); i += 2 {
			if extra[i+1] == "" {
				h.Del(extra[i])
			} else {
				h.Set(extra[i], extra[i+1])
			}
		}
		return h
	}
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"raw","version":"1"}}`
	call := func(meta, args string) string {
		return `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{` + meta + `,"name":"market__place_order","arguments":` + args + `}}`
	}
	resp := post(t, e.url, h(), call(meta, `{"symbol":"ACME","quantity":3}`))
	body, _ := io.ReadAll(resp.Body)
	var a struct {
		Result struct {
			ResultType string `json:"resultType"`
			Meta       map[string]struct {
				Name string `json:"name"`
			} `json:"_meta"`
			Content []struct{ Text string } `json:"content"`
		} `json:"result"`
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &a) != nil ||
		a.Result.ResultType != "complete" || a.Result.Meta["io.modelcontextprotocol/serverInfo"].Name != "warden-gateway" ||
		len(a.Result.Content) != 1 || a.Result.Content[0].Text != "ordered 3 ACME" {
		t.Fatalf("%d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	// Bad parameters are 400 under this protocol, from the gateway as from the SDK.
	if resp := post(t, e.url, h("Mcp-Name", "nowhere__x"), strings.Replace(call(meta, `{}`), "market__place_order", "nowhere__x", 1)); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("an unknown tool: %d", resp.StatusCode)
	}
	for _, c := range []struct {
		name string
		h    http.Header
		body string
	}{
		{"no Mcp-Name", h("Mcp-Name", ""), call(meta, `{}`)},
		{"another Mcp-Name", h("Mcp-Name", "market__get_quote"), call(meta, `{}`)},
		{"no capabilities", h(), call(strings.Replace(meta, `"io.modelcontextprotocol/clientCapabilities":{},`, "", 1), `{}`)},
		{"another version in _meta", h(), call(strings.Replace(meta, `protocolVersion":"2026-07-28"`, `protocolVersion":"2026-07-29"`, 1), `{}`)},
	} {
		resp := post(t, e.url, c.h, c.body)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d %s", c.name, resp.StatusCode, body)
		}
	}
	if n := e.plainCalls.Load(); n != 1 {
		t.Errorf("%d calls answered by the fast path, want 1", n)
	}
}
