package decide_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/policy"
)

// decideHTTP asks POST /v1/decide of the running server as bearer, and
// returns the decision.
func (e *env) decideHTTP(t *testing.T, bearer string, body any) decide.Decision {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(e.ctx, "POST", e.w.URL+"/v1/decide", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	var d decide.Decision
	if resp.StatusCode != http.StatusOK || json.Unmarshal(out, &d) != nil || d.AuditIndex < 0 {
		t.Fatalf("POST /v1/decide: HTTP %d %s", resp.StatusCode, out)
	}
	return d
}

// rawEntry is a decision's entry as the log holds it (and every SIEM gets it).
func (e *env) rawEntry(t *testing.T, index int64) []byte {
	t.Helper()
	data, err := e.w.App.Audit.Read(e.ctx, index, index+1)
	if err != nil {
		t.Fatal(err)
	}
	return data[0]
}

const recordPolicy = `package warden.authz

default allow := false

allow if "reader" in input.agent.roles

# Policy sees every value, whatever the record keeps.
deny contains "wrong password" if input.args.items[0].password != "pw-0-secret"
`

// Attack: a SIEM reader guesses a redacted password offline against the
// entry's input digest. The digest is of the recorded (redacted) input, so
// no guess, the right one included, gives a match.
func TestInputDigestGivesNoRedactedValueBack(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *config.Config) { c.Decide.Redact, c.Policy.Timeout = []string{"args.pin"}, time.Second })
	e.activate(t, testBundle(testPolicy))
	tok := e.agent(t, "ai-agent://dev/reader", "reader")
	d := e.decideHTTP(t, e.w.AdminToken, map[string]any{"token": tok, "action": "tools/call", "resource": map[string]string{"kind": "mcp.tool", "id": "db/login"},
		"args": map[string]any{"user": "ada", "pin": "4711"}})
	if d.Outcome != policy.Allow {
		t.Fatalf("decision %+v", d)
	}
	en := e.entry(t, d.AuditIndex)
	if !strings.Contains(string(en.Input), `"pin":"[redacted]"`) {
		t.Fatalf("recorded %s", en.Input)
	}
	for guess := range 10000 {
		guess := fmt.Sprintf("%04d", guess)
		cand := strings.Replace(string(en.Input), `"[redacted]"`, `"`+guess+`"`, 1)
		sum := sha256.Sum256([]byte(cand))
		if en.InputDigest == "sha256:"+hex.EncodeToString(sum[:]) {
			t.Fatalf("the digest confirms the guess %q", guess)
		}
	}
	sum := sha256.Sum256(en.Input)
	if en.InputDigest != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Fatalf("digest %s is not that of the recorded input", en.InputDigest)
	}

	// Replay works on what is recorded, and says its inputs were altered.
	r := policy.NewReplayer(mustCompile(t, testPolicy), 3)
	r.Add(e.ctx, policy.Recorded{DecisionID: en.DecisionID, Agent: en.Agent, Action: en.Action, Resource: en.Resource,
		Outcome: policy.Outcome(en.Outcome), Reasons: en.Reasons, Input: en.Input})
	if rep := r.Report(); rep.Decisions != 1 || rep.Redacted != 1 || rep.Flipped != 0 {
		t.Fatalf("replay: %+v", rep)
	}
}

func mustCompile(t *testing.T, rego string) *policy.Engine {
	t.Helper()
	eng, err := policy.Compile(context.Background(), testBundle(rego), policy.EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

// Attack: an agent's secrets travel in its arguments, in arrays, under
// names nobody listed. None reaches the audit log; policy still sees them.
func TestSecretsDoNotReachTheRecord(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *config.Config) {
		c.Decide.Redact, c.Policy.Timeout = []string{"args.rows[*].ssn", "args.card.number"}, time.Second
	})
	e.activate(t, testBundle(recordPolicy))
	tok := e.agent(t, "ai-agent://dev/reader", "reader")
	args := map[string]any{
		"items":   []any{map[string]any{"name": "first", "password": "pw-0-secret"}, map[string]any{"PassWord": "pw-1-secret"}},
		"config":  map[string]any{"X-Api-Key": "ak-secret", "nested": []any{map[string]any{"client_secret": "cs-secret", "refresh_token": "rt-secret"}}},
		"headers": map[string]any{"Authorization": "Bearer bearer-secret", "Cookie": "sid=cookie-secret"},
		"rows":    []any{map[string]any{"ssn": "ssn-0-secret", "id": 1}, map[string]any{"ssn": "ssn-1-secret", "id": 2}},
		"card":    map[string]any{"number": "4111-secret", "brand": "visa"},
	}
	d := e.decideHTTP(t, e.w.AdminToken, map[string]any{"token": tok, "action": "tools/call", "resource": map[string]string{"kind": "mcp.tool", "id": "db/login"}, "args": args})
	if d.Outcome != policy.Allow {
		t.Fatalf("policy did not see the password: %+v", d)
	}
	raw := e.rawEntry(t, d.AuditIndex)
	if bytes.Contains(raw, []byte("-secret")) {
		t.Fatalf("a secret reached the audit log: %s", raw)
	}
	for _, kept := range []string{`"name":"first"`, `"brand":"visa"`, `"id":2`} {
		if !bytes.Contains(raw, []byte(kept)) {
			t.Errorf("the record lost %s: %s", kept, raw)
		}
	}
	if en := e.entry(t, d.AuditIndex); !strings.Contains(string(en.Detail), `"redacted":10`) {
		t.Errorf("the entry does not say what was redacted: %s", en.Detail)
	}
}

// Attack: one decision with 1 MB of arguments is 1 MB in the log and in
// every SIEM. Large values are kept as their size and digest, and the
// recorded input has a ceiling.
func TestLargeArgumentsAreRecordedByDigest(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *config.Config) { c.Policy.Timeout = time.Second })
	e.activate(t, testBundle(testPolicy))
	tok := e.agent(t, "ai-agent://dev/reader", "reader")
	doc := strings.Repeat("a", 1_000_000)
	sum := sha256.Sum256([]byte(doc))
	many := make([]any, 20_000)
	for i := range many {
		many[i] = "row"
	}
	for _, tc := range []struct {
		name string
		args map[string]any
		want string
	}{
		{"one large value", map[string]any{"doc": doc, "q": "x"}, `"doc":"[omitted: 1000000 bytes, sha256:` + hex.EncodeToString(sum[:]) + `]"`},
		{"many small values", map[string]any{"rows": many}, `"args":"[omitted: `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := e.decideHTTP(t, e.w.AdminToken, map[string]any{"token": tok, "action": "tools/call", "resource": map[string]string{"kind": "mcp.tool", "id": "kb/put"}, "args": tc.args})
			raw := e.rawEntry(t, d.AuditIndex)
			if len(raw) > 70_000 || !bytes.Contains(raw, []byte(tc.want)) {
				t.Fatalf("an entry of %d bytes, want under 70000 with %s", len(raw), tc.want)
			}
		})
	}
}

// syncBuffer is a log destination tests can read while the pipeline writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Attack: a builtin that fails on an argument (to_number of a password)
// puts the value in its error; the pipeline's log line does not carry it.
func TestEvaluationErrorsLogNoArguments(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	e.activate(t, testBundle(testPolicy))
	tok := e.agent(t, "ai-agent://dev/reader", "reader")
	var logs syncBuffer
	p, err := decide.New(decide.Config{RecordInput: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, e.w.App.Verifier, e.w.App.View, e.w.App.Policies, e.w.App.Audit)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	d, err := p.Decide(e.ctx, testPoint, &decide.Request{Token: tok, Action: "error", Resource: decide.Resource{Kind: "mcp.tool", ID: "x"},
		Args: json.RawMessage(`{"n": "hunter2"}`)})
	if err != nil || d.Outcome != policy.Deny || d.Reasons[0] != policy.ReasonError {
		t.Fatalf("decision %+v %v", d, err)
	}
	if out := logs.String(); strings.Contains(out, "hunter2") || !strings.Contains(out, policy.ReasonError) {
		t.Fatalf("the log: %s", out)
	}
	if raw := e.rawEntry(t, d.AuditIndex); !bytes.Contains(raw, []byte("hunter2")) {
		// Not a secret by its name: the record keeps it, as configured.
		t.Fatalf("the record lost an ordinary argument: %s", raw)
	}
}
