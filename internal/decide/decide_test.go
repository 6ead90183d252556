package decide_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
	"github.com/warden-run/warden/internal/wire"
	"github.com/warden-run/warden/sdk"
)

const testPolicy = `package warden.authz

default allow := false

allow if {
	input.action == "tools/call"
	"reader" in input.agent.roles
}

deny contains "pii" if input.resource.attributes.pii

deny contains "wrong region" if {
	input.args.region_check
	input.context.source.region != "eu-west"
}

obligations := {"redact": ["ssn"]} if input.resource.kind == "db.table"

# Failure modes, chosen by the action.
allow := "yes" if input.action == "malformed"

allow := false if input.action == "conflict"

allow := true if input.action == "conflict"

deny contains "x" if {
	input.action == "error"
	to_number(input.args.n) > 1
}

deny contains "slow" if {
	input.action == "slow"
	count([x | some x in numbers.range(1, 100000000)]) > 0
}
`

const testData = `{"resources": {"mcp.tool": {"crm/*": {"pii": true}}}}`

func testBundle(rego string) *policy.Bundle {
	return &policy.Bundle{Files: map[string][]byte{"policy.rego": []byte(rego), "data.json": []byte(testData)}}
}

// testPoint is the enforcement point of the tests: in process, serving
// Warden's own audience, which tokens get when they name no resource.
var testPoint = decide.InProcess("pep-test", "warden")

type env struct {
	w   *apptest.Instance
	ctx context.Context
}

func start(t *testing.T, edit func(*config.Config)) *env {
	t.Helper()
	w := apptest.Start(t, func(c *config.Config) {
		c.Policy.Timeout = 30 * time.Millisecond
		c.Decide.Regions = map[string][]string{"eu-west": {"10.1.0.0/16"}, "eu-west-dmz": {"10.1.9.0/24"}}
		if edit != nil {
			edit(c)
		}
	})
	return &env{w: w, ctx: context.Background()}
}

func (e *env) activate(t *testing.T, b *policy.Bundle) string {
	t.Helper()
	v, _, _, err := e.w.App.Policies.Push(e.ctx, "admin:test", b, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.w.App.Policies.Activate(e.ctx, "admin:test", v.ID); err != nil {
		t.Fatal(err)
	}
	return v.ID
}

// agent registers an agent in the dev trust domain and returns a token of it.
func (e *env) agent(t *testing.T, id string, roles ...string) string {
	t.Helper()
	k := e.w.Register(t, id, roles...)
	c, err := sdk.NewClient(e.w.URL, id, k)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Token(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

func (e *env) decide(t *testing.T, req decide.Request) decide.Decision {
	t.Helper()
	d, err := e.w.App.Decide.Decide(e.ctx, testPoint, &req)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(d.ID, "dec_") {
		t.Fatalf("decision id %q", d.ID)
	}
	return d
}

func (e *env) entry(t *testing.T, index int64) *audit.Entry {
	t.Helper()
	data, err := e.w.App.Audit.Read(e.ctx, index, index+1)
	if err != nil {
		t.Fatal(err)
	}
	en, err := audit.DecodeEntry(data[0])
	if err != nil {
		t.Fatal(err)
	}
	return en
}

// Every path that is not a clean allow is a deny that says why, and is recorded.
func TestFailClosed(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	reader := e.agent(t, "ai-agent://dev/reader", "reader")
	call := func(action string, args string) decide.Request {
		r := decide.Request{Token: reader, Action: action, Resource: decide.Resource{Kind: "mcp.tool", ID: "search/query"}}
		if args != "" {
			r.Args = json.RawMessage(args)
		}
		return r
	}

	// Before any policy is active, nothing is allowed.
	if d := e.decide(t, call("tools/call", "")); d.Outcome != policy.Deny || !slices.Equal(d.Reasons, []string{policy.ReasonNoPolicy}) {
		t.Fatalf("no active policy: %+v", d)
	}
	version := e.activate(t, testBundle(testPolicy))

	quarantined := e.agent(t, "ai-agent://dev/quarantined", "reader")
	if _, err := e.w.App.Registry.SetStatus(e.ctx, "admin:test", "ai-agent://dev/quarantined", store.StatusQuarantined, "test"); err != nil {
		t.Fatal(err)
	}
	disabled := e.agent(t, "ai-agent://dev/disabled", "reader")
	if _, err := e.w.App.Registry.SetStatus(e.ctx, "admin:test", "ai-agent://dev/disabled", store.StatusDisabled, "test"); err != nil {
		t.Fatal(err)
	}
	revoked := e.agent(t, "ai-agent://dev/revoked", "reader")
	if _, err := e.w.App.Registry.RevokeTokens(e.ctx, "admin:test", "ai-agent://dev/revoked", "test"); err != nil {
		t.Fatal(err)
	}
	prodKey := e.w.Register(t, "ai-agent://prod/needs-dpop", "reader")
	pc, _ := sdk.NewClient(e.w.URL, "ai-agent://prod/needs-dpop", prodKey, sdk.WithDPoP())
	prodTok, err := pc.Token(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	forged := reader[:len(reader)-4] + "AAAA"

	cases := []struct {
		name   string
		req    decide.Request
		reason string
	}{
		{"not allowed by the policy", call("tools/list", ""), policy.ReasonNotAllowed},
		{"a deny reason", decide.Request{Token: reader, Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool", ID: "crm/customers"}}, "pii"},
		{"policy error", call("error", `{"n": "many"}`), policy.ReasonError},
		{"policy conflict", call("conflict", ""), policy.ReasonConflict},
		{"malformed result", call("malformed", ""), policy.ReasonMalformed},
		{"policy timeout", call("slow", ""), policy.ReasonTimeout},
		{"garbage token", decide.Request{Token: "not-a-token", Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool"}}, decide.ReasonTokenInvalid},
		{"forged signature", decide.Request{Token: forged, Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool"}}, decide.ReasonTokenInvalid},
		{"quarantined agent", decide.Request{Token: quarantined, Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool"}}, decide.ReasonAgentQuarantined},
		{"disabled agent", decide.Request{Token: disabled, Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool"}}, decide.ReasonAgentDisabled},
		{"a request naming an audience the enforcement point does not serve", decide.Request{Token: reader, Audience: "https://service.example", Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool"}}, decide.ReasonAudienceMismatch},
		{"revoked tokens", decide.Request{Token: revoked, Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool"}}, decide.ReasonTokenRevoked},
		{"DPoP required, none given", decide.Request{Token: prodTok.AccessToken, Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool"}}, decide.ReasonDPoPRequired},
		{"DPoP proof for another request", decide.Request{Token: prodTok.AccessToken, DPoP: mustProof(t, prodKey, "GET", "https://other.example/x", prodTok.AccessToken),
			HTM: "POST", HTU: "https://tools.example/call", Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool"}}, decide.ReasonDPoPInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := e.decide(t, tc.req)
			if d.Outcome != policy.Deny || !slices.Equal(d.Reasons, []string{tc.reason}) || len(d.Obligations) != 0 {
				t.Fatalf("decision %+v, want deny for %q", d, tc.reason)
			}
			if d.AuditIndex < 0 {
				t.Fatal("a deny was not recorded")
			}
			en := e.entry(t, d.AuditIndex)
			if en.DecisionID != d.ID || en.Outcome != "deny" || !slices.Equal(en.Reasons, d.Reasons) || en.EnforcementPoint != "pep-test" {
				t.Fatalf("recorded %+v for %+v", en, d)
			}
		})
	}

	// With DPoP done right, the prod agent is allowed.
	ok := decide.Request{Token: prodTok.AccessToken, DPoP: mustProof(t, prodKey, "POST", "https://tools.example/call", prodTok.AccessToken),
		HTM: "POST", HTU: "https://tools.example/call", Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool", ID: "search/query"}}
	if d := e.decide(t, ok); d.Outcome != policy.Allow || d.PolicyVersion != version {
		t.Fatalf("a good DPoP request: %+v", d)
	}

	// The audit log refuses: the decision is a deny, whatever the policy says.
	if err := e.w.App.Audit.Close(); err != nil {
		t.Fatal(err)
	}
	if d := e.decide(t, call("tools/call", "")); d.Outcome != policy.Deny || !slices.Equal(d.Reasons, []string{decide.ReasonAuditUnavailable}) || d.AuditIndex != -1 {
		t.Fatalf("with the audit log closed: %+v", d)
	}
}

func mustProof(t *testing.T, k *sdk.Key, method, url, token string) string {
	t.Helper()
	p, err := k.DPoPProof(method, url, token)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMalformedRequestsChangeNothing(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	e.activate(t, testBundle(testPolicy))
	tok := e.agent(t, "ai-agent://dev/reader", "reader")
	before, _ := e.w.App.Audit.Size(e.ctx)
	for name, tc := range map[string]struct {
		req   decide.Request
		field string
	}{
		"no token":           {decide.Request{Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool"}}, "token"},
		"no action":          {decide.Request{Token: tok, Resource: decide.Resource{Kind: "mcp.tool"}}, "action"},
		"no resource kind":   {decide.Request{Token: tok, Action: "tools/call"}, "resource.kind"},
		"args not an object": {decide.Request{Token: tok, Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool"}, Args: json.RawMessage(`[1]`)}, "args"},
		"dpop without htu":   {decide.Request{Token: tok, DPoP: "x", HTM: "GET", Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool"}}, "dpop"},
		"bad source ip": {decide.Request{Token: tok, Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool"},
			Context: decide.RequestContext{Source: decide.Source{IP: "10.1.2"}}}, "context.source.ip"},
	} {
		_, err := e.w.App.Decide.Decide(e.ctx, testPoint, &tc.req)
		if !errors.Is(err, decide.ErrInvalidRequest) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v, want ErrInvalidRequest naming %s", name, err, tc.field)
		}
	}
	if after, _ := e.w.App.Audit.Size(e.ctx); after != before {
		t.Fatalf("malformed requests were recorded: %d entries, then %d", before, after)
	}
}

// An allowed decision carries the policy's obligations, and its entry the
// input (redacted as configured) and the digest of that recorded input.
func TestAllowIsRecordedWithItsInput(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *config.Config) { c.Decide.Redact = []string{"args.secret"} })
	version := e.activate(t, testBundle(testPolicy))
	tok := e.agent(t, "ai-agent://dev/team/reader", "reader")
	d := e.decide(t, decide.Request{Token: tok, Action: "tools/call", Resource: decide.Resource{Kind: "db.table", ID: "orders"},
		Args:    json.RawMessage(`{"region_check": true, "secret": "hunter2", "big": 12345678901234567890}`),
		Context: decide.RequestContext{Source: decide.Source{IP: "10.1.9.7"}, Session: decide.Session{ID: "s-1"}}})
	if d.Outcome != policy.Deny || !slices.Equal(d.Reasons, []string{"wrong region"}) {
		// 10.1.9.7 is in the more specific eu-west-dmz range.
		t.Fatalf("from the dmz: %+v", d)
	}
	d = e.decide(t, decide.Request{Token: tok, Action: "tools/call", Resource: decide.Resource{Kind: "db.table", ID: "orders"},
		Args:    json.RawMessage(`{"region_check": true, "secret": "hunter2", "big": 12345678901234567890}`),
		Context: decide.RequestContext{Source: decide.Source{IP: "10.1.2.3"}, Session: decide.Session{ID: "s-1"}}})
	if d.Outcome != policy.Allow || d.PolicyVersion != version || d.Obligations["redact"] == nil {
		t.Fatalf("from eu-west: %+v", d)
	}
	en := e.entry(t, d.AuditIndex)
	if en.Kind != audit.KindDecision || en.Agent != "ai-agent://dev/team/reader" || en.Action != "tools/call" || en.PolicyVersion != version ||
		string(en.Resource) != `{"id":"orders","kind":"db.table"}` || !strings.Contains(string(en.Detail), `"redact"`) {
		t.Fatalf("entry %+v", en)
	}
	if strings.Contains(string(en.Input), "hunter2") || !strings.Contains(string(en.Input), `"secret":"[redacted]"`) {
		t.Fatalf("recorded input not redacted: %s", en.Input)
	}
	var in map[string]any
	dec := json.NewDecoder(strings.NewReader(string(en.Input)))
	dec.UseNumber()
	if err := dec.Decode(&in); err != nil {
		t.Fatal(err)
	}
	agent := in["agent"].(map[string]any)
	cx := in["context"].(map[string]any)
	if agent["trust_domain"] != "dev" || agent["status"] != "active" || agent["owner"] != "team-test" ||
		cx["source"].(map[string]any)["region"] != "eu-west" || cx["session"].(map[string]any)["id"] != "s-1" ||
		in["args"].(map[string]any)["big"] != json.Number("12345678901234567890") {
		t.Fatalf("recorded input %s", en.Input)
	}
	// The digest is of the recorded input, which anyone holding the entry
	// can check.
	sum := sha256.Sum256(en.Input)
	if en.InputDigest != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Fatalf("input digest %s is not that of the recorded input", en.InputDigest)
	}
}

// A version that does not compile or pass its tests never goes live; the
// last good one keeps deciding.
func TestVersionGate(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	good := e.activate(t, testBundle(testPolicy))
	tok := e.agent(t, "ai-agent://dev/reader", "reader")
	allowed := decide.Request{Token: tok, Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool", ID: "search/query"}}

	broken := testBundle("package warden.authz\nallow if {")
	failing := testBundle(testPolicy)
	failing.Files["policy_test.rego"] = []byte("package warden.authz\ntest_nobody_reads if not allow with input as {\"action\": \"tools/call\", \"agent\": {\"roles\": [\"reader\"]}}")
	failingCase := testBundle(testPolicy)
	failingCase.Files["cases/c.yaml"] = []byte("- {name: readers are denied, input: {action: tools/call, agent: {roles: [reader]}}, outcome: deny}")
	for name, tc := range map[string]struct {
		b    *policy.Bundle
		want error
		says string // what the error must name
	}{
		"does not compile":  {broken, policy.ErrInvalidBundle, ""},
		"a unit test fails": {failing, policy.ErrTestsFailed, "warden.authz.test_nobody_reads (fail)"},
		"a case fails":      {failingCase, policy.ErrTestsFailed, "cases/c.yaml: readers are denied"},
	} {
		_, _, _, err := e.w.App.Policies.Push(e.ctx, "admin:test", tc.b, "bad")
		if !errors.Is(err, tc.want) || !strings.Contains(fmt.Sprint(err), tc.says) {
			t.Errorf("%s: push gave %v, want %v naming %q", name, err, tc.want, tc.says)
		}
		if _, err := e.w.App.Policies.Version(e.ctx, tc.b.Digest()); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: stored anyway (%v)", name, err)
		}
		if _, err := e.w.App.Policies.Activate(e.ctx, "admin:test", tc.b.Digest()); err == nil {
			t.Errorf("%s: activated", name)
		}
		if live := e.w.App.Policies.Live(); live.State.Active != good || live.Active.Version() != good {
			t.Fatalf("%s: the live version changed to %s", name, live.State.Active)
		}
		if d := e.decide(t, allowed); d.Outcome != policy.Allow || d.PolicyVersion != good {
			t.Fatalf("%s: the last good version no longer decides: %+v", name, d)
		}
	}
}

// Activation swaps the version under load: every decision in flight is
// decided by one version or the other, never by none.
func TestActivateAndRollbackUnderLoad(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	v1 := e.activate(t, testBundle(testPolicy))
	v2Bundle := testBundle(strings.Replace(testPolicy, `"reader" in input.agent.roles`, `"writer" in input.agent.roles`, 1))
	v2, _, _, err := e.w.App.Policies.Push(e.ctx, "admin:test", v2Bundle, "readers out")
	if err != nil {
		t.Fatal(err)
	}
	tok := e.agent(t, "ai-agent://dev/reader", "reader")
	req := decide.Request{Token: tok, Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool", ID: "search/query"}}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[string]policy.Outcome{}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := req
				d, err := e.w.App.Decide.Decide(e.ctx, testPoint, &r)
				if err != nil {
					t.Error(err)
					return
				}
				want := map[string]policy.Outcome{v1: policy.Allow, v2.ID: policy.Deny}[d.PolicyVersion]
				if want == "" || d.Outcome != want {
					t.Errorf("decision by %q: %s %q", d.PolicyVersion, d.Outcome, d.Reasons)
				}
				mu.Lock()
				seen[d.PolicyVersion] = d.Outcome
				mu.Unlock()
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	st, err := e.w.App.Policies.Activate(e.ctx, "admin:ops", v2.ID)
	if err != nil || st.Active != v2.ID {
		t.Fatalf("activate: %v %+v", err, st)
	}
	time.Sleep(20 * time.Millisecond)
	st, err = e.w.App.Policies.Rollback(e.ctx, "admin:ops")
	if err != nil || st.Active != v1 {
		t.Fatalf("rollback: %v %+v", err, st)
	}
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	if len(seen) != 2 {
		t.Fatalf("decided by %v, want both versions", seen)
	}
	if d := e.decide(t, req); d.PolicyVersion != v1 || d.Outcome != policy.Allow {
		t.Fatalf("after the rollback: %+v", d)
	}
	// Nothing before v1 to roll back to.
	if _, err := e.w.App.Policies.Rollback(e.ctx, "admin:ops"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rollback past the first activation: %v", err)
	}
	// The changes are in the audit log, as policy entries with their actor.
	waitFor(t, func() bool {
		res, _, _ := e.w.App.Audit.Query(e.ctx, audit.Query{After: -1, Kind: audit.KindPolicy, Limit: 100})
		var actions []string
		for _, r := range res {
			if r.Entry.Actor == "admin:ops" {
				actions = append(actions, r.Entry.Action)
			}
		}
		return slices.Equal(actions, []string{"policy.activate", "policy.rollback"})
	})
}

// The shadow version is evaluated beside the active one and never
// enforced; each disagreement is recorded with both outcomes.
func TestShadowDisagreements(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	active := e.activate(t, testBundle(testPolicy))
	stricter := testBundle(testPolicy + "\ndeny contains \"no search\" if input.resource.id == \"search/query\"\n")
	shadow, _, _, err := e.w.App.Policies.Push(e.ctx, "admin:test", stricter, "stricter")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.w.App.Policies.SetShadow(e.ctx, "admin:test", shadow.ID); err != nil {
		t.Fatal(err)
	}
	tok := e.agent(t, "ai-agent://dev/reader", "reader")
	agree := e.decide(t, decide.Request{Token: tok, Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool", ID: "docs/read"}})
	differ := e.decide(t, decide.Request{Token: tok, Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool", ID: "search/query"}})
	if agree.Outcome != policy.Allow || differ.Outcome != policy.Allow || differ.PolicyVersion != active {
		t.Fatalf("the shadow was enforced: %+v %+v", agree, differ)
	}
	var found *audit.Entry
	waitFor(t, func() bool {
		res, _, _ := e.w.App.Audit.Query(e.ctx, audit.Query{After: -1, Kind: audit.KindPolicy, Limit: 100})
		for _, r := range res {
			if r.Entry.Action == "policy.shadow_disagreement" {
				found = r.Entry
			}
		}
		return found != nil && e.w.App.Decide.ShadowStats().Evaluated == 2
	})
	if found.DecisionID != differ.ID || found.Outcome != "deny" || found.PolicyVersion != shadow.ID {
		t.Fatalf("disagreement %+v", found)
	}
	var detail struct {
		Active struct {
			Version string `json:"version"`
			Outcome string `json:"outcome"`
		} `json:"active"`
		Shadow struct {
			Outcome string   `json:"outcome"`
			Reasons []string `json:"reasons"`
		} `json:"shadow"`
	}
	if err := json.Unmarshal(found.Detail, &detail); err != nil || detail.Active.Outcome != "allow" || detail.Active.Version != active ||
		detail.Shadow.Outcome != "deny" || !slices.Equal(detail.Shadow.Reasons, []string{"no search"}) {
		t.Fatalf("detail %s", found.Detail)
	}
	if s := e.w.App.Decide.ShadowStats(); s.Disagreements != 1 || s.Dropped != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The session's taints reach policy as a sorted set; a request whose proof
// an in-process enforcement point verified is decided without one, but its
// token and agent are checked again; MayAllow hides what can never be
// allowed and everything from an agent that is not authenticated.
func TestSessionTaintsVerifiedProofsAndMayAllow(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *config.Config) { c.Decide.RecordInput = true })
	e.activate(t, testBundle(testPolicy+`
deny contains "tainted" if "untrusted_content" in input.context.session.taints
`))
	tok := e.agent(t, "ai-agent://dev/reader", "reader")
	req := decide.Request{Token: tok, Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool", ID: "web/fetch"},
		Context: decide.RequestContext{Session: decide.Session{ID: "s1", Taints: []string{"untrusted_content", "a", "a"}}}}
	d := e.decide(t, req)
	if d.Outcome != policy.Deny || !slices.Equal(d.Reasons, []string{"tainted"}) {
		t.Fatalf("tainted session: %+v", d)
	}
	var in struct {
		Context struct {
			Session struct {
				Taints []string `json:"taints"`
			} `json:"session"`
		} `json:"context"`
	}
	if err := json.Unmarshal(e.entry(t, d.AuditIndex).Input, &in); err != nil || !slices.Equal(in.Context.Session.Taints, []string{"a", "untrusted_content"}) {
		t.Fatalf("recorded taints %v (%v)", in.Context.Session.Taints, err)
	}
	bad := req
	bad.Context.Session.Taints = []string{"Not A Taint"}
	if _, err := e.w.App.Decide.Decide(e.ctx, testPoint, &bad); !errors.Is(err, decide.ErrInvalidRequest) {
		t.Fatalf("malformed taint: %v", err)
	}

	// A prod agent needs DPoP; DecideVerified takes the enforcement point's word for the proof.
	prodKey := e.w.Register(t, "ai-agent://prod/needs-dpop", "reader")
	pc, _ := sdk.NewClient(e.w.URL, "ai-agent://prod/needs-dpop", prodKey, sdk.WithDPoP())
	prodTok, err := pc.Token(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	plain := decide.Request{Token: prodTok.AccessToken, Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool", ID: "x"}}
	if d := e.decide(t, plain); d.Outcome != policy.Deny || d.Reasons[0] != decide.ReasonDPoPRequired {
		t.Fatalf("without a proof: %+v", d)
	}
	if d, err := e.w.App.Decide.DecideVerified(e.ctx, testPoint, &plain); err != nil || d.Outcome != policy.Allow {
		t.Fatalf("proof verified by the enforcement point: %+v %v", d, err)
	}
	forged := plain
	forged.Token = prodTok.AccessToken[:len(prodTok.AccessToken)-4] + "AAAA"
	if d, err := e.w.App.Decide.DecideVerified(e.ctx, testPoint, &forged); err != nil || d.Outcome != policy.Deny || d.Reasons[0] != decide.ReasonTokenInvalid {
		t.Fatalf("forged token through DecideVerified: %+v %v", d, err)
	}

	// MayAllow.
	may := func(r decide.Request) bool { return e.w.App.Decide.MayAllow(e.ctx, testPoint, &r) }
	if !may(plain) {
		t.Fatal("MayAllow hides an allowed tool")
	}
	if may(decide.Request{Token: tok, Action: "tools/delete", Resource: decide.Resource{Kind: "mcp.tool", ID: "x"}}) {
		t.Fatal("MayAllow shows what no role allows")
	}
	if may(decide.Request{Token: tok, Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool", ID: "crm/customers"}}) {
		t.Fatal("MayAllow shows what a deny forbids whatever the arguments")
	}
	if may(forged) {
		t.Fatal("MayAllow shows tools to a forged token")
	}
}

// A decision made is recorded, also when its caller is gone by then (an
// agent that hangs up after each attempt must leave a trace).
func TestDecisionRecordedWhenTheCallerIsGone(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	e.activate(t, testBundle("package warden.authz\n\nallow if input.action == \"read\"\n"))
	tok := e.agent(t, "ai-agent://dev/hangs-up", "reader")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d, err := e.w.App.Decide.Decide(ctx, testPoint, &decide.Request{Token: tok, Action: "write", Resource: decide.Resource{Kind: "mcp.tool", ID: "x/y"}})
	if err != nil {
		t.Fatal(err)
	}
	if d.AuditIndex < 0 {
		t.Fatalf("not recorded: %+v", d)
	}
	if en := e.entry(t, d.AuditIndex); en.DecisionID != d.ID || en.Agent != "ai-agent://dev/hangs-up" {
		t.Fatalf("entry %+v", en)
	}
}

// A restricted agent keeps only the roles configured as safe
// (decide.restricted_roles): what its other roles allowed, it is denied.
func TestRestrictedAgentKeepsOnlyTheSafeRoles(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *config.Config) { c.Decide.RestrictedRoles = []string{"reader"} })
	e.activate(t, testBundle("package warden.authz\n\nallow if \"writer\" in input.agent.roles\n"))
	const id = "ai-agent://dev/editor"
	tok := e.agent(t, id, "reader", "writer")
	req := decide.Request{Token: tok, Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool", ID: "docs/edit"}}
	if d := e.decide(t, req); d.Outcome != policy.Allow {
		t.Fatalf("active: %+v", d)
	}
	if _, err := e.w.App.Registry.SetStatus(e.ctx, "admin:test", id, store.StatusRestricted, "test"); err != nil {
		t.Fatal(err)
	}
	d := e.decide(t, req)
	if d.Outcome != policy.Deny {
		t.Fatalf("restricted, with the writer role kept: %+v", d)
	}
	en := e.w.Decision(t, d.ID)
	if !strings.Contains(string(en.Input), `"roles":["reader"]`) {
		t.Fatalf("the restricted agent's roles in the input: %s", en.Input)
	}
}

// Each argument's provenance is in the input only when a live policy (the
// active one, or the one in shadow, evaluated on the same input) reads it;
// the summary always is.
func TestArgumentProvenanceOnlyWhenRead(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	e.activate(t, testBundle("package warden.authz\n\nallow if count(input.context.provenance.untrusted) == 1\n"))
	tok := e.agent(t, "ai-agent://dev/office/assistant", "assistant")
	req := decide.Request{Token: tok, Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool", ID: "mail/send"},
		Args: json.RawMessage(`{"to": "drop@evil.example", "note": "see attached"}`),
		Context: decide.RequestContext{Provenance: &wire.Provenance{Args: map[string]wire.ArgOrigin{
			"to":   {Sources: []string{"untrusted"}, OnlyUntrusted: true, Values: 1, Upstreams: []string{"www"}, Tools: []string{"fetch"}, Reads: []int64{1}},
			"note": {Sources: []string{"unknown"}, Upstreams: []string{}, Tools: []string{}, Reads: []int64{}},
		}, UntrustedReads: []int64{1}}}}
	provenanceOf := func(d decide.Decision) map[string]any {
		t.Helper()
		if d.Outcome != policy.Allow {
			t.Fatalf("%+v", d)
		}
		var in struct {
			Context struct {
				Provenance map[string]any `json:"provenance"`
			} `json:"context"`
		}
		if err := json.Unmarshal(e.entry(t, d.AuditIndex).Input, &in); err != nil {
			t.Fatal(err)
		}
		return in.Context.Provenance
	}
	p := provenanceOf(e.decide(t, req))
	if fmt.Sprint(p["untrusted"], p["unknown"], p["arguments"]) != "[to] [note] 2" || p["known"] != true {
		t.Fatalf("the summary: %v", p)
	}
	if _, ok := p["args"]; ok {
		t.Fatalf("args in the input of a policy that does not read them: %v", p)
	}
	reads := testBundle("package warden.authz\n\nallow if input.context.provenance.args.to.only_untrusted\n")
	v, _, _, err := e.w.App.Policies.Push(e.ctx, "admin:test", reads, "reads args")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.w.App.Policies.SetShadow(e.ctx, "admin:test", v.ID); err != nil {
		t.Fatal(err)
	}
	p = provenanceOf(e.decide(t, req))
	to, _ := p["args"].(map[string]any)["to"].(map[string]any)
	if fmt.Sprint(to["sources"], to["upstreams"], to["reads"]) != "[untrusted] [www] [1]" {
		t.Fatalf("with a shadow that reads them: %v", p)
	}
	if _, err := e.w.App.Policies.Activate(e.ctx, "admin:test", v.ID); err != nil {
		t.Fatal(err)
	}
	if p = provenanceOf(e.decide(t, req)); p["args"] == nil {
		t.Fatalf("active and reading them: %v", p)
	}
}

// The same call again, after more reads were made and forgotten, has the
// same input: a count that moved with every read made every input new, so
// the decision memo and the rule cache never served a repeated call.
func TestRepeatedCallKeepsItsInput(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	e.activate(t, testBundle("package warden.authz\n\nallow := true\n"))
	tok := e.agent(t, "ai-agent://dev/office/poller", "assistant")
	digest := func(untrusted []int64, evicted int) string {
		t.Helper()
		d := e.decide(t, decide.Request{Token: tok, Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool", ID: "mail/inbox"},
			Args: json.RawMessage(`{"folder": "inbox"}`),
			Context: decide.RequestContext{Provenance: &wire.Provenance{Args: map[string]wire.ArgOrigin{
				"folder": {Sources: []string{"unknown"}, Upstreams: []string{}, Tools: []string{}, Reads: []int64{}},
			}, UntrustedReads: untrusted, Evicted: evicted}}})
		return e.entry(t, d.AuditIndex).InputDigest
	}
	first := digest([]int64{3, 9}, 300)
	if again := digest([]int64{3, 9, 12}, 301); again != first {
		t.Errorf("the same call after one more read: input %s, was %s", again, first)
	}
	if none := digest(nil, 0); none == first {
		t.Error("an agent that read nothing untrusted and forgot nothing has the same input as one that did")
	}
}
