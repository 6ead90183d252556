package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/store"
	"github.com/warden-run/warden/sdk"
)

const (
	serviceA = "https://a.example/mcp"
	serviceB = "https://b.example/mcp"
)

// registerPEP registers an enforcement point over the API and returns its credential.
func registerPEP(t *testing.T, w *apptest.Instance, body string) string {
	t.Helper()
	status, out := post(t, w, "/v1/enforcement-points", w.AdminToken, body)
	var reg struct {
		Credential string `json:"credential"`
	}
	if json.Unmarshal([]byte(out), &reg); status != http.StatusCreated || reg.Credential == "" {
		t.Fatalf("register %s: HTTP %d %s", body, status, out)
	}
	return reg.Credential
}

// tokenFor registers an agent and returns a token of it issued for resource.
func tokenFor(t *testing.T, w *apptest.Instance, id, resource string) string {
	t.Helper()
	k := register(t, w, id, "reader")
	c, err := sdk.NewClient(w.URL, id, k, sdk.WithResource(resource))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

type answer struct {
	Outcome    string   `json:"outcome"`
	Reasons    []string `json:"reasons"`
	AuditIndex int64    `json:"audit_index"`
}

func decideAs(t *testing.T, w *apptest.Instance, cred, body string) answer {
	t.Helper()
	status, out := post(t, w, "/v1/decide", cred, body)
	var a answer
	if json.Unmarshal([]byte(out), &a); status != http.StatusOK || a.Outcome == "" {
		t.Fatalf("decide: HTTP %d %s", status, out)
	}
	return a
}

func entryAt(t *testing.T, w *apptest.Instance, index int64) *audit.Entry {
	t.Helper()
	data, err := w.App.Audit.Read(context.Background(), index, index+1)
	if err != nil {
		t.Fatal(err)
	}
	e, err := audit.DecodeEntry(data[0])
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func detailOf(t *testing.T, e *audit.Entry) map[string]any {
	t.Helper()
	d := map[string]any{}
	if len(e.Detail) > 0 {
		if err := json.Unmarshal(e.Detail, &d); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// Attack: an enforcement point's credential with a token the agent got
// for another service, the audience left out of the request. The
// enforcement point's registered audience is checked all the same.
func TestDecideChecksTheRegisteredAudience(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, func(c *config.Config) {
		c.Identity.Resources, c.Policy.Timeout = []string{serviceA, serviceB}, time.Second
	})
	pushPolicy(t, w, apiPolicy)
	pepA := registerPEP(t, w, `{"name": "pep-a", "audience": "`+serviceA+`"}`)
	forB := tokenFor(t, w, "ai-agent://dev/b-user", serviceB)
	forA := tokenFor(t, w, "ai-agent://dev/a-user", serviceA)
	req := func(tok, audience string) string {
		return fmt.Sprintf(`{"token": %q, "audience": %q, "action": "tools/call", "resource": {"kind": "mcp.tool", "id": "x"}}`, tok, audience)
	}
	for _, tc := range []struct {
		name, cred, body, outcome, reason string
	}{
		{"a token for another service, no audience named", pepA, req(forB, ""), "deny", "warden.token_wrong_audience"},
		{"a token for another service, its audience named", pepA, req(forB, serviceB), "deny", "warden.audience_mismatch"},
		{"a token for the registered audience", pepA, req(forA, ""), "allow", ""},
		{"a token for the registered audience, named", pepA, req(forA, serviceA), "allow", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := decideAs(t, w, tc.cred, tc.body)
			if a.Outcome != tc.outcome || tc.reason != "" && !slices.Equal(a.Reasons, []string{tc.reason}) {
				t.Fatalf("%+v, want %s %s", a, tc.outcome, tc.reason)
			}
		})
	}

	// may-allow: the same check.
	status, out := post(t, w, "/v1/decide/may-allow", pepA, fmt.Sprintf(`{"token": %q, "actions": [{"action": "tools/call", "resource": {"kind": "mcp.tool", "id": "x"}}]}`, forB))
	if status != http.StatusOK || !strings.Contains(out, `[false]`) {
		t.Fatalf("may-allow with a token for another service: HTTP %d %s", status, out)
	}

	// Deliberately without an audience: any token, and the entry says so.
	anyAud := registerPEP(t, w, `{"name": "pep-any", "no_audience": true}`)
	a := decideAs(t, w, anyAud, req(forB, ""))
	if a.Outcome != "allow" || detailOf(t, entryAt(t, w, a.AuditIndex))["audience_unchecked"] != "registered_without_audience" {
		t.Fatalf("an audience-less enforcement point: %+v %s", a, entryAt(t, w, a.AuditIndex).Detail)
	}

	// Registration needs one or the other, and says so.
	for _, body := range []string{`{"name": "pep-c"}`, `{"name": "pep-c", "audience": "` + serviceA + `", "no_audience": true}`,
		`{"name": "pep-c", "audience": "has space"}`, `{"name": "pep-c", "audience": "` + serviceA + `", "trust": ["region"]}`} {
		if status, out := post(t, w, "/v1/enforcement-points", w.AdminToken, body); status != http.StatusBadRequest || !strings.Contains(out, "invalid_request") {
			t.Errorf("register %s: HTTP %d %s", body, status, out)
		}
	}
}

// An enforcement point registered before audiences (as the migration
// leaves it) keeps working, unchecked, and its decisions and listing say so.
func TestEnforcementPointWithoutAudienceFromBefore(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, func(c *config.Config) {
		c.Identity.Resources, c.Policy.Timeout = []string{serviceA, serviceB}, time.Second
	})
	pushPolicy(t, w, apiPolicy)
	const cred = "wpep_" + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
	digest := sha256.Sum256([]byte(cred))
	if err := w.App.Store.RegisterEnforcementPoint(context.Background(), store.EnforcementPoint{Name: "old-gw", CredentialDigest: digest[:],
		Trust: []string{"source_ip", "session"}, CreatedAt: store.Now(), CreatedBy: "admin:bootstrap"},
		store.Event{Time: store.Now(), Actor: "admin:bootstrap", Action: "enforcement_point.register", Target: "pep:old-gw"}); err != nil {
		t.Fatal(err)
	}
	// The change feed reloads the enforcement points.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, ok := w.App.EnforcementPoints.Authenticate(cred); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the enforcement point registered in the store was not loaded")
		}
	}
	a := decideAs(t, w, cred, fmt.Sprintf(`{"token": %q, "action": "tools/call", "resource": {"kind": "mcp.tool", "id": "x"}}`, tokenFor(t, w, "ai-agent://dev/r", serviceB)))
	if a.Outcome != "allow" || detailOf(t, entryAt(t, w, a.AuditIndex))["audience_unchecked"] != "registered_before_audiences" {
		t.Fatalf("%+v %s", a, entryAt(t, w, a.AuditIndex).Detail)
	}
	resp := adminDo(t, w, "GET", "/v1/enforcement-points", "")
	if out := readAll(t, resp); !strings.Contains(out, `"audience_unset":true`) {
		t.Fatalf("listed %s", out)
	}
}

// Attack: an enforcement point reports a source address in the range a
// policy trusts, and session fields, it is not trusted for. They are left
// out of the policy input, and the entry says so.
func TestUntrustedContextIsDropped(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, func(c *config.Config) {
		c.Decide.Regions, c.Policy.Timeout = map[string][]string{"office": {"10.1.0.0/16"}}, time.Second
	})
	pushPolicy(t, w, `package warden.authz

default allow := false

allow if input.context.source.region == "office"

deny contains "tainted" if "untrusted_content" in input.context.session.taints
`)
	tok := tokenFor(t, w, "ai-agent://dev/r", "warden")
	body := fmt.Sprintf(`{"token": %q, "action": "tools/call", "resource": {"kind": "mcp.tool", "id": "x"},
		"context": {"source": {"ip": "10.1.2.3"}, "session": {"id": "s-1", "taints": ["untrusted_content"]}}}`, tok)
	for _, tc := range []struct {
		name, trust, outcome string
		dropped              []any
	}{
		{"trusted for nothing", `[]`, "deny", []any{"context.source.ip", "context.session.id", "context.session.taints"}},
		{"trusted for the source address", `["source_ip"]`, "allow", []any{"context.session.id", "context.session.taints"}},
		{"trusted for both", `["source_ip", "session"]`, "deny", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cred := registerPEP(t, w, fmt.Sprintf(`{"name": "pep-%d", "audience": "warden", "trust": %s}`, len(tc.dropped), tc.trust))
			a := decideAs(t, w, cred, body)
			e := entryAt(t, w, a.AuditIndex)
			got, _ := detailOf(t, e)["untrusted_context"].([]any)
			if a.Outcome != tc.outcome || !slices.Equal(got, tc.dropped) {
				t.Fatalf("%+v, dropped %v; want %s, dropped %v", a, got, tc.outcome, tc.dropped)
			}
			if len(tc.dropped) > 0 && strings.Contains(string(e.Input), "10.1.2.3") == slices.Contains(tc.dropped, any("context.source.ip")) {
				t.Fatalf("recorded input %s", e.Input)
			}
		})
	}
}

// Attack: an enforcement point's credential and an agent's revoked,
// expired or quarantined token (or one for another service) write decisions
// in the agent's name. The agent field holds only an agent that was
// authenticated; a refused token's subject is recorded as claimed.
func TestRefusedTokensDoNotFrameTheirAgent(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, func(c *config.Config) {
		c.Identity.Resources, c.Policy.Timeout = []string{serviceB}, time.Second
		c.Identity.ClockSkew = 0 // so that a one-second token expires in a second
	})
	pushPolicy(t, w, apiPolicy)
	cred := registerPEP(t, w, `{"name": "pep", "audience": "warden"}`)
	ctx := context.Background()
	token := func(id string, opts ...sdk.Option) string {
		t.Helper()
		k := register(t, w, id, "reader")
		c, err := sdk.NewClient(w.URL, id, k, opts...)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := c.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return tok.AccessToken
	}
	expired := token("ai-agent://dev/expired", sdk.WithLifetime(time.Second))
	revoked := token("ai-agent://dev/revoked")
	if _, err := w.App.Registry.RevokeTokens(ctx, "admin:test", "ai-agent://dev/revoked", "test"); err != nil {
		t.Fatal(err)
	}
	quarantined := token("ai-agent://dev/quarantined")
	if _, err := w.App.Registry.SetStatus(ctx, "admin:test", "ai-agent://dev/quarantined", store.StatusQuarantined, "test"); err != nil {
		t.Fatal(err)
	}
	elsewhere := token("ai-agent://dev/elsewhere", sdk.WithResource(serviceB))
	good := token("ai-agent://dev/good")
	time.Sleep(1100 * time.Millisecond)

	for _, tc := range []struct {
		name, token, agent, reason string
	}{
		{"expired", expired, "ai-agent://dev/expired", "warden.token_expired"},
		{"revoked", revoked, "ai-agent://dev/revoked", "warden.token_revoked"},
		{"quarantined", quarantined, "ai-agent://dev/quarantined", "warden.agent_quarantined"},
		{"for another service", elsewhere, "ai-agent://dev/elsewhere", "warden.token_wrong_audience"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := decideAs(t, w, cred, fmt.Sprintf(`{"token": %q, "action": "tools/call", "resource": {"kind": "mcp.tool", "id": "x"}}`, tc.token))
			e := entryAt(t, w, a.AuditIndex)
			claimed, _ := detailOf(t, e)["claimed_agent"].(map[string]any)
			if a.Outcome != "deny" || e.Agent != "" || claimed["id"] != tc.agent || claimed["unverified"] != tc.reason {
				t.Fatalf("%+v: agent %q, detail %s", a, e.Agent, e.Detail)
			}
		})
	}
	a := decideAs(t, w, cred, fmt.Sprintf(`{"token": %q, "action": "tools/call", "resource": {"kind": "mcp.tool", "id": "x"}}`, good))
	if e := entryAt(t, w, a.AuditIndex); a.Outcome != "allow" || e.Agent != "ai-agent://dev/good" || strings.Contains(string(e.Detail), "claimed_agent") {
		t.Fatalf("an authenticated agent: %+v %+v", a, e)
	}
}
