package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/grants"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
	"github.com/warden-run/warden/internal/wire"
	"github.com/warden-run/warden/sdk"
)

const oneApproval = `package warden.authz

allow := true

obligations["require_approvals"] := {"count": 1} if input.resource.id == "plc/set_setpoint"
`

// On PostgreSQL, an approval given at one replica is used up once, by one
// of many identical calls decided at both replicas at the same moment.
func TestApprovalConsumedOnceAcrossReplicas(t *testing.T) {
	t.Parallel()
	dsn := os.Getenv("WARDEN_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("set WARDEN_TEST_POSTGRES to run the replica test against PostgreSQL")
	}
	first, second := replicas(t, dsn)
	activate(t, first, map[string][]byte{"policy.rego": []byte(oneApproval)})
	deadline := time.Now().Add(10 * time.Second)
	for second.App.Policies.Live().Active == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	ctx := context.Background()
	const id = "ai-agent://dev/plant/tuner"
	c, err := sdk.NewClient(first.URL, id, first.Register(t, id, "tuner"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req := func() *decide.Request {
		return &decide.Request{Token: tok.AccessToken, Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool", ID: "plc/set_setpoint"},
			Args: []byte(`{"oven": 3, "setpoint": 245}`)}
	}
	d, err := first.App.Decide.Decide(ctx, decide.InProcess("plant-gw", "warden"), req())
	if err != nil || d.Outcome != policy.PendingApproval || d.Approval == nil {
		t.Fatalf("first call: %+v, %v", d, err)
	}
	// Approved through the other replica's API.
	r, _ := http.NewRequest("POST", second.URL+"/v1/approvals/"+d.Approval.ID+"/approve", strings.NewReader(`{"reason": "ok"}`))
	r.Header.Set("Authorization", "Bearer "+first.AdminToken) // one bootstrap token for the store
	r.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(r)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("approve: %v %v", resp, err)
	}
	resp.Body.Close()

	var allowed, held atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 16 {
		w := []*apptest.Instance{first, second}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			d, err := w.App.Decide.Decide(ctx, decide.InProcess("plant-gw", "warden"), req())
			switch {
			case err != nil:
				t.Error(err)
			case d.Outcome == policy.Allow:
				allowed.Add(1)
			case d.Outcome == policy.PendingApproval:
				held.Add(1)
			default:
				t.Errorf("decision %+v", d)
			}
		}()
	}
	close(start)
	wg.Wait()
	if allowed.Load() != 1 || held.Load() != 15 {
		t.Fatalf("%d allowed and %d held, want 1 and 15", allowed.Load(), held.Load())
	}
}

// An agent that approved another's action cannot then run it itself,
// through a token delegated to it: who runs an action is part of what was
// approved.
func TestApproverCannotRunTheActionByDelegation(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	activate(t, w, map[string][]byte{"policy.rego": []byte(strings.Replace(oneApproval, `{"count": 1}`, `{"count": 1, "roles": ["reviewer"]}`, 1))})
	ctx := context.Background()
	const a, b = "ai-agent://dev/plant/tuner", "ai-agent://dev/plant/reviewer"
	ac, err := sdk.NewClient(w.URL, a, w.Register(t, a, "tuner", "delegator"))
	if err != nil {
		t.Fatal(err)
	}
	bk := w.Register(t, b, "tuner", "reviewer")
	bc, err := sdk.NewClient(w.URL, b, bk)
	if err != nil {
		t.Fatal(err)
	}
	atok, err := ac.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	decideWith := func(tok string) decide.Decision {
		d, err := w.App.Decide.Decide(ctx, decide.InProcess("plant-gw", "warden"), &decide.Request{Token: tok, Action: "tools/call",
			Resource: decide.Resource{Kind: "mcp.tool", ID: "plc/set_setpoint"}, Args: []byte(`{"oven": 3, "setpoint": 245}`)})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := decideWith(atok.AccessToken)
	apr, _ := w.App.Store.Approval(ctx, d.Approval.ID)
	if err := bc.Approve(ctx, apr.ID, apr.Digest, "looks fine"); err != nil {
		t.Fatal(err)
	}
	handed, err := ac.Delegate(ctx, atok.AccessToken, b)
	if err != nil {
		t.Fatal(err)
	}
	if d := decideWith(handed.AccessToken); d.Outcome == policy.Allow || d.Approval == nil || d.Approval.ID == apr.ID {
		t.Fatalf("the approver ran the action it approved, by delegation: %+v", d)
	}
	if got, _ := w.App.Store.Approval(ctx, apr.ID); got.Status != "approved" {
		t.Fatalf("the approval is %s", got.Status)
	}
	if d := decideWith(atok.AccessToken); d.Outcome != policy.Allow {
		t.Fatalf("the requester's own call: %+v", d)
	}
}

// On PostgreSQL, a grant given at one replica counts at the other at once,
// and its revocation too.
func TestGrantReachesReplicasThroughPostgres(t *testing.T) {
	t.Parallel()
	dsn := os.Getenv("WARDEN_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("set WARDEN_TEST_POSTGRES to run the replica test against PostgreSQL")
	}
	first, second := replicas(t, dsn)
	activate(t, first, map[string][]byte{"policy.rego": []byte("package warden.authz\n\ndefault allow := false\n"),
		"grants.rego": []byte("package warden.grants\n\ndecision := {\"outcome\": \"grant\"}\n")})
	ctx := context.Background()
	const id = "ai-agent://dev/radiology/assistant"
	first.Register(t, id, "radiology")
	for deadline := time.Now().Add(10 * time.Second); second.App.Policies.Live().Active == nil || second.App.View.Fresh() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second replica did not catch up")
		}
	}
	seen := func() int {
		return len(second.App.Grants.ForDecision(id, "study-1", "tools/call", "pacs/query", map[string]any{}, time.Now()))
	}
	g, err := first.App.Grants.Ask(ctx, grants.Request{Agent: id, Task: "study-1", Actions: []string{"tools/call"}, Resources: []string{"pacs/query"},
		Lifetime: "10m"}, grants.Requester{ID: "human:idp#ada", Kind: store.ApproverHuman})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for seen() != 1 {
		if time.Since(start) > time.Second {
			t.Fatal("the grant did not reach the other replica within a second")
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("given at one replica, seen at the other %v later", time.Since(start))
	if _, err := first.App.Grants.Revoke(ctx, g.ID, "human:idp#ada", "study cancelled"); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	for seen() != 0 {
		if time.Since(start) > time.Second {
			t.Fatal("the revocation did not reach the other replica within a second")
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("revoked at one replica, gone at the other %v later", time.Since(start))
}

// On PostgreSQL, a decision's lineage is in the shared log: asked at the
// other replica, it is found and proven.
func TestLineageAcrossReplicas(t *testing.T) {
	t.Parallel()
	dsn := os.Getenv("WARDEN_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("set WARDEN_TEST_POSTGRES to run the replica test against PostgreSQL")
	}
	first, second := replicas(t, dsn, func(c *config.Config) { c.Audit.CheckpointInterval = 50 * time.Millisecond })
	activate(t, first, map[string][]byte{"policy.rego": []byte("package warden.authz\n\nallow := true\n")})
	for deadline := time.Now().Add(10 * time.Second); second.App.Policies.Live().Active == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no policy at the second replica")
		}
	}
	ctx := context.Background()
	const id = "ai-agent://dev/office/assistant"
	c, err := sdk.NewClient(first.URL, id, first.Register(t, id, "assistant"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	decideAt := func(w *apptest.Instance, p *wire.Provenance) decide.Decision {
		d, err := w.App.Decide.Decide(ctx, decide.InProcess("office-gw", "warden"), &decide.Request{Token: tok.AccessToken, Action: "tools/call",
			Resource: decide.Resource{Kind: "mcp.tool", ID: "mail/send"}, Args: []byte(`{"to": "x@evil.example"}`),
			Context: decide.RequestContext{Provenance: p}})
		if err != nil || d.Outcome != policy.Allow {
			t.Fatalf("%+v %v", d, err)
		}
		return d
	}
	read := decideAt(first, nil)
	send := decideAt(second, &wire.Provenance{Args: map[string]wire.ArgOrigin{"to": {Sources: []string{"untrusted"}, OnlyUntrusted: true,
		Values: 1, Upstreams: []string{"web"}, Tools: []string{"fetch"}, Reads: []int64{read.AuditIndex}}}, UntrustedReads: []int64{read.AuditIndex}})
	var ans struct {
		Entries []struct {
			Index int64  `json:"index"`
			Role  string `json:"role"`
		} `json:"entries"`
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		code, body := call(t, first, first.AdminToken, "GET", "/v1/audit/lineage?decision="+send.ID, "")
		if code == http.StatusOK {
			json.Unmarshal([]byte(body), &ans)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lineage at the other replica: HTTP %d %s", code, body)
		}
	}
	if len(ans.Entries) != 2 || ans.Entries[0].Index != send.AuditIndex || ans.Entries[1].Index != read.AuditIndex || ans.Entries[1].Role != "source" {
		t.Fatalf("lineage %+v (send %d, read %d)", ans, send.AuditIndex, read.AuditIndex)
	}
}
