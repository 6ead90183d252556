package app_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/monitor"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
	"github.com/warden-run/warden/sdk"
)

// containPolicy allows nothing; its playbook quarantines an agent at the
// first call no role of it allows.
var containPolicy = map[string][]byte{
	"policy.rego": []byte("package warden.authz\n\ndefault allow := false\n"),
	"response.rego": []byte(`package warden.response

actions contains {"action": "quarantine", "reason": "a call no role allows"} if "not_permitted" in input.fired
`),
}

func activate(t testing.TB, w *apptest.Instance, files map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	v, _, _, err := w.App.Policies.Push(ctx, "admin:test", &policy.Bundle{Files: files}, "contain")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.App.Policies.Activate(ctx, "admin:test", v.ID); err != nil {
		t.Fatal(err)
	}
}

// contain registers an agent, has act decide one call of it that no role
// allows (with a token from issuer), and returns how long after that
// decision was answered watch refused the agent (its view has it
// quarantined), or an error after 10 s.
func contain(t testing.TB, issuer, act, watch *apptest.Instance, id string) (time.Duration, error) {
	t.Helper()
	ctx := context.Background()
	key := issuer.Register(t, id, "worker")
	c, err := sdk.NewClient(issuer.URL, id, key)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.FetchToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The registration reaches another replica by the change feed; until
	// it does, that replica refuses the agent as unknown.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, ok := act.App.View.Agent(id); ok {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s is not known to the deciding replica 10 s after its registration", id)
		}
	}
	req := decide.Request{Token: tok.AccessToken, Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool", ID: "payments/transfer"}}
	d, err := act.App.Decide.Decide(ctx, decide.InProcess("test", "warden"), &req)
	if err != nil || d.Outcome != policy.Deny || !slices.Contains(d.Reasons, policy.ReasonNotAllowed) {
		t.Fatalf("the call: %+v, %v", d, err)
	}
	answered := time.Now()
	for {
		if a, ok := watch.App.View.Agent(id); ok && a.Status == store.StatusQuarantined {
			return time.Since(answered), nil
		}
		if time.Since(answered) > 10*time.Second {
			return 0, fmt.Errorf("%s is not quarantined 10 s after the call", id)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// The automatic response reaches the decision point of its own process:
// the call's decision fires not_permitted, the playbook quarantines, the
// view every enforcement point checks refuses the agent.
func TestResponseContainsInProcess(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	activate(t, w, containPolicy)
	took, err := contain(t, w, w, w, "ai-agent://dev/ops/rogue")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("contained %v after the decision", took)
}

// replicas starts two control planes of one deployment (one issuer, one
// master key) on one fresh PostgreSQL database; edit, when set, changes the
// second's configuration first.
func replicas(t testing.TB, dsn string, edit ...func(*config.Config)) (*apptest.Instance, *apptest.Instance) {
	db := apptest.FreshPostgres(t, dsn)
	master := filepath.Join(t.TempDir(), "master.key")
	shared := func(c *config.Config) {
		c.Store = db
		c.Identity.MasterKeyFile = master
	}
	first := apptest.Start(t, shared)
	second := apptest.Start(t, func(c *config.Config) {
		shared(c)
		c.Identity.Issuer = first.URL
		for _, e := range edit {
			e(c)
		}
	})
	return first, second
}

// On PostgreSQL, a decision made on one replica is seen by the monitor of
// the replica leading the audit log, whose responder quarantines the agent,
// and every replica's view refuses it.
func TestResponseReachesReplicasThroughPostgres(t *testing.T) {
	t.Parallel()
	dsn := os.Getenv("WARDEN_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("set WARDEN_TEST_POSTGRES to run the replica test against PostgreSQL")
	}
	first, second := replicas(t, dsn)
	activate(t, first, containPolicy)
	for i, pair := range [][2]*apptest.Instance{{first, second}, {second, first}} {
		// The policy reaches the second replica by the change feed.
		deadline := time.Now().Add(10 * time.Second)
		for pair[0].App.Policies.Live().Active == nil && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		took, err := contain(t, first, pair[0], pair[1], fmt.Sprintf("ai-agent://dev/ops/rogue-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("decided on one replica, refused on the other %v later", took)
	}
}

// BenchmarkContainment is the time from a decision's answer to the agent
// being refused: in the process that decided (SQLite), and on the other
// replica of two on PostgreSQL (WARDEN_TEST_POSTGRES). Each iteration is a
// fresh agent whose first call fires the playbook.
func BenchmarkContainment(b *testing.B) {
	b.Run("one process", func(b *testing.B) {
		w := apptest.Start(b, nil)
		activate(b, w, containPolicy)
		benchContain(b, w, w, w)
	})
	b.Run("replicas on PostgreSQL", func(b *testing.B) {
		dsn := os.Getenv("WARDEN_TEST_POSTGRES")
		if dsn == "" {
			b.Skip("set WARDEN_TEST_POSTGRES")
		}
		first, second := replicas(b, dsn)
		activate(b, first, containPolicy)
		for second.App.Policies.Live().Active == nil {
			time.Sleep(10 * time.Millisecond)
		}
		benchContain(b, first, second, first)
	})
}

func benchContain(b *testing.B, issuer, act, watch *apptest.Instance) {
	var ds []time.Duration
	for i := range b.N {
		took, err := contain(b, issuer, act, watch, fmt.Sprintf("ai-agent://dev/bench/rogue-%d-%d", b.N, i))
		if err != nil {
			b.Fatal(err)
		}
		ds = append(ds, took)
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(ds[len(ds)-1].Microseconds())/1000, "max-ms")
}

// Anyone can send the token endpoint assertions that name an agent; signed
// with a key that is not the agent's, they must not raise its risk, or an
// outsider could have any agent quarantined.
func TestForgedAssertionsDoNotRaiseTheNamedAgentsRisk(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	activate(t, w, containPolicy)
	const victim = "ai-agent://dev/ops/victim"
	w.Register(t, victim, "worker")
	forger := sdk.GenerateKey()
	for i := 0; i < 12; i++ {
		assertion, err := forger.Assertion(victim, w.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.PostForm(w.URL+"/oauth/token", url.Values{"grant_type": {"client_credentials"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("a forged assertion: HTTP %d", resp.StatusCode)
		}
	}
	// The monitor has read the refusals (and a later entry) by now.
	size, _ := w.App.Audit.Size(context.Background())
	deadline := time.Now().Add(10 * time.Second)
	for w.App.Monitor.Stats().Position < size-1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if r := w.App.Monitor.Risk(victim); r.Score != 0 || len(r.Signals) != 0 {
		t.Fatalf("forged assertions naming the agent raised its risk: %+v", r)
	}
	if a, _ := w.App.Registry.Agent(context.Background(), victim); a.Status != store.StatusActive {
		t.Fatalf("the named agent is %s", a.Status)
	}
}

// On PostgreSQL, an append to the shared audit log is announced to every
// replica's follower of the log, and only to it: the change feed's
// subscribers, whose buffers the announcements (as many as the log's
// commits) would fill into resyncs, never see them.
func TestAuditAppendsAreAnnouncedToReplicas(t *testing.T) {
	t.Parallel()
	dsn := os.Getenv("WARDEN_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("set WARDEN_TEST_POSTGRES to run the replica test against PostgreSQL")
	}
	// The second replica's monitor is off: the test reads the announcements.
	first, second := replicas(t, dsn, func(c *config.Config) { c.Monitor.Disabled = true })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	changes := second.App.Store.Subscribe(ctx)
	appended := second.App.Store.(interface{ AuditAppended() <-chan struct{} }).AuditAppended()
	for len(appended) > 0 { // announcements of the start's own entries
		<-appended
	}
	for i := 0; i < 300; i++ { // more than a subscriber's buffer holds
		if _, err := first.App.Audit.AppendDurable(ctx, &audit.Entry{Kind: audit.KindAdmin, Action: "test.append", Actor: "admin:test", Outcome: "done"}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-appended:
	case <-ctx.Done():
		t.Fatal("no announcement of the appends on the other replica")
	}
	for {
		select {
		case c := <-changes:
			if c.Kind == store.ChangeAudit || c.Kind == store.ChangeResync {
				t.Fatalf("the change feed's subscribers saw %s", c.Kind)
			}
		default:
			return
		}
	}
}

// A delegate that presents the token it was handed, and is refused, is
// charged for it: the agent that delegated is not (else a delegate could
// step up, then restrict, the agent that trusted it).
func TestDelegatesRefusalsAreTheirOwn(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	activate(t, w, containPolicy)
	ctx := context.Background()
	const victim, delegate = "ai-agent://dev/ops/lender", "ai-agent://dev/ops/borrower"
	v, err := sdk.NewClient(w.URL, victim, w.Register(t, victim, "worker", "delegator"))
	if err != nil {
		t.Fatal(err)
	}
	dk := w.Register(t, delegate, "worker")
	tok, err := v.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	handed, err := v.Delegate(ctx, tok.AccessToken, delegate)
	if err != nil {
		t.Fatal(err)
	}
	// Refused after the token checks out (at an enforcement point of
	// another audience), and before (a proof for another request).
	for i := range 12 {
		pep, req := decide.InProcess("test-pep", "https://elsewhere.example"), &decide.Request{Token: handed.AccessToken,
			Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool", ID: "kb/search"}}
		if i%2 == 1 {
			proof, _ := dk.DPoPProof("POST", "https://other.example/x", handed.AccessToken)
			pep, req.DPoP, req.HTM, req.HTU = decide.InProcess("test-pep", "warden"), proof, "POST", "https://gw.example/mcp"
		}
		d, err := w.App.Decide.Decide(ctx, pep, req)
		if err != nil || d.Outcome != policy.Deny || !strings.HasPrefix(d.Reasons[0], "warden.") {
			t.Fatalf("%+v %v", d, err)
		}
	}
	size, _ := w.App.Audit.Size(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for w.App.Monitor.Stats().Position < size-1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if r := w.App.Monitor.Risk(victim); r.Score != 0 {
		t.Fatalf("the delegate's refusals raised the delegating agent's risk: %+v", r)
	}
	if r := w.App.Monitor.Risk(delegate); r.Score == 0 || !slices.Contains(r.Signals, monitor.SignalAuthFailures) {
		t.Fatalf("the delegate's own risk: %+v", r)
	}
}
