package console_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
)

// Every page renders for an admin; a change needs the session's CSRF
// token and a reason, goes through the admin API as the signed-in
// person, and is in the audit log with that person and reason; bad
// input is refused and changes nothing.
func TestConsoleActions(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, func(c *config.Config) { c.Audit.CheckpointInterval = 50 * time.Millisecond })
	ctx := context.Background()
	covered := func(index int64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if cp, err := w.App.Audit.Checkpoint(ctx); err == nil && cp.Size > index {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no checkpoint covers entry %d", index)
			}
		}
	}
	first := activate(t, w, "package warden.authz\nallow := true\n", "first")
	covered(0)
	second := activate(t, w, browserPolicy, "second")
	const agent = "ai-agent://dev/plant/tuner"
	tok := agentToken(t, w, agent, "tuner")
	held, err := w.App.Decide.Decide(ctx, decide.InProcess("plant-gw", "warden"), &decide.Request{Token: tok.AccessToken, Action: "tools/call",
		Resource: decide.Resource{Kind: "mcp.tool", ID: "plc/set_setpoint"}, Args: []byte(`{"oven": 3}`)})
	if err != nil || held.Approval == nil {
		t.Fatalf("%+v %v", held, err)
	}
	covered(held.AuditIndex) // a second checkpoint, for the audit page's consistency proof

	b := newBrowser(t, w.URL)
	res, overview := b.signIn(w.AdminToken)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: %d", res.StatusCode)
	}
	token := csrf(t, overview)
	agentPage := "/ui/agent?id=" + url.QueryEscape(agent)
	for path, want := range map[string]string{
		"/ui/":                "Pending approvals",
		"/ui/agents":          agent,
		"/ui/agents?q=tuner":  agent,
		"/ui/agents?q=nobody": "No agents match",
		agentPage:             "Respond",
		"/ui/decisions":       "plc/set_setpoint",
		"/ui/decisions?agent=" + url.QueryEscape(agent) + "&outcome=pending_approval": "plc/set_setpoint",
		"/ui/decisions?resource=nothing-like-it":                                      "No decisions match",
		"/ui/approvals":                                                               held.Approval.ID,
		"/ui/incidents?all=1":                                                         "Incidents",
		"/ui/policies":                                                                second,
		"/ui/policies/" + second:                                                      `<span class="add">&#43; deny contains &#34;secret_is_off_limits&#34;`,
		"/ui/audit":                                                                   "consistency proof verified",
	} {
		res, page := b.do("GET", path, nil)
		if res.StatusCode != http.StatusOK || !strings.Contains(page, want) {
			t.Errorf("%s: %d, without %q:\n%s", path, res.StatusCode, want, page)
		}
		if strings.Contains(page, "<script") || strings.Contains(page, "style=") {
			t.Errorf("%s: a script or an inline style", path)
		}
	}
	for _, bad := range []string{"/ui/decisions?since=yesterday", "/ui/decisions?before=-3", "/ui/agents?status=asleep"} {
		if res, _ := b.do("GET", bad, nil); res.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", bad, res.StatusCode)
		}
	}
	if res, _ := b.do("GET", "/ui/agent?id="+url.QueryEscape("ai-agent://dev/plant/nobody"), nil); res.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown agent: %d", res.StatusCode)
	}

	status := func() store.AgentStatus {
		a, err := w.App.Registry.Agent(ctx, agent)
		if err != nil {
			t.Fatal(err)
		}
		return a.Status
	}
	// Refused, changing nothing: no CSRF token, no reason, no such action.
	if res, _ := b.do("POST", "/ui/agent", url.Values{"id": {agent}, "action": {"quarantine"}, "reason": {"x"}}); res.StatusCode != http.StatusForbidden {
		t.Fatalf("without the CSRF token: %d", res.StatusCode)
	}
	for _, form := range []url.Values{
		{"csrf": {token}, "id": {agent}, "action": {"quarantine"}},
		{"csrf": {token}, "id": {agent}, "action": {"obliterate"}, "reason": {"x"}},
	} {
		res, _ := b.do("POST", "/ui/agent", form)
		_, page := b.do("GET", agentPage, nil)
		if res.StatusCode != http.StatusSeeOther || !strings.Contains(page, "Refused: ") || status() != store.StatusActive {
			t.Fatalf("%v: %d, status %s\n%s", form, res.StatusCode, status(), page)
		}
	}
	const why = "it asked for the reactor's key"
	b.do("POST", "/ui/agent", url.Values{"csrf": {token}, "id": {agent}, "action": {"quarantine"}, "reason": {why}})
	if _, page := b.do("GET", agentPage, nil); status() != store.StatusQuarantined || !strings.Contains(page, "quarantine done") {
		t.Fatalf("after quarantine: %s\n%s", status(), page)
	}
	found := false
	for deadline := time.Now().Add(5 * time.Second); !found && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		got, _, err := w.App.Audit.Query(ctx, audit.Query{Kind: audit.KindAdmin, After: -1, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range got {
			found = found || e.Entry.Target == agent && e.Entry.Actor == "admin:bootstrap" && strings.Contains(string(e.Entry.Detail), why)
		}
	}
	if !found {
		t.Fatal("the quarantine is not in the audit log with its actor and reason")
	}

	// The approval, as the signed-in person.
	b.do("POST", "/ui/approvals/"+held.Approval.ID, url.Values{"csrf": {token}, "vote": {"approve"}, "reason": {"fine"}})
	a, err := w.App.Store.Approval(ctx, held.Approval.ID)
	if err != nil || a.Status != store.ApprovalApproved || len(a.Votes) != 1 || a.Votes[0].By != "admin:bootstrap" || a.Votes[0].Reason != "fine" {
		t.Fatalf("approval %+v %v", a, err)
	}

	// Policies: activate the first version again, then roll back.
	b.do("POST", "/ui/policies", url.Values{"csrf": {token}, "action": {"activate"}, "version": {first}})
	if got := w.App.Policies.Live().State.Active; got != first {
		t.Fatalf("after activate: %s", got)
	}
	b.do("POST", "/ui/policies", url.Values{"csrf": {token}, "action": {"rollback"}})
	if got := w.App.Policies.Live().State.Active; got != second {
		t.Fatalf("after rollback: %s", got)
	}

	// The export is the whole log, one entry per line.
	res, body := b.do("GET", "/ui/audit/export", nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(res.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("export: %d %v", res.StatusCode, res.Header)
	}
	entries, checkpoints := 0, 0
	for sc := bufio.NewScanner(strings.NewReader(body)); sc.Scan(); {
		if strings.HasPrefix(sc.Text(), `{"checkpoint":`) {
			checkpoints++
		} else {
			entries++
		}
	}
	if size, _ := w.App.Audit.TreeSize(ctx); checkpoints == 0 || int64(entries) < size {
		t.Fatalf("export: %d entries and %d checkpoints, of a tree of %d", entries, checkpoints, size)
	}
}

// An agent's page lists its tokens that have not expired, from their
// audit entries; one revoked there is refused at once.
func TestConsoleRevokesAToken(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	ctx := context.Background()
	activate(t, w, "package warden.authz\nallow := true\n", "all")
	const agent = "ai-agent://dev/ops/holder"
	tok := agentToken(t, w, agent, "reader")
	got, _, err := w.App.Audit.Query(ctx, audit.Query{Agent: agent, Kind: audit.KindToken, After: -1, Limit: 10})
	if err != nil || len(got) != 1 {
		t.Fatalf("token entries: %d %v", len(got), err)
	}
	var issued struct{ JTI string }
	json.Unmarshal(got[0].Entry.Detail, &issued)
	decideNow := func() decide.Decision {
		d, err := w.App.Decide.Decide(ctx, decide.InProcess("gw", "warden"), &decide.Request{Token: tok.AccessToken, Action: "tools/call",
			Resource: decide.Resource{Kind: "mcp.tool", ID: "kb/search"}})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := decideNow(); d.Outcome != policy.Allow {
		t.Fatalf("before: %+v", d)
	}
	b := newBrowser(t, w.URL)
	_, overview := b.signIn(w.AdminToken)
	page := "/ui/agent?id=" + url.QueryEscape(agent)
	_, body := b.do("GET", page, nil)
	if !strings.Contains(body, issued.JTI) || !strings.Contains(body, ">live<") || strings.Contains(body, tok.AccessToken) {
		t.Fatalf("the agent's page and its token %s:\n%s", issued.JTI, body)
	}
	b.do("POST", "/ui/agent", url.Values{"csrf": {csrf(t, overview)}, "id": {agent}, "action": {"revoke-token"}, "jti": {issued.JTI}, "reason": {"leaked in a log"}})
	if _, body = b.do("GET", page, nil); !strings.Contains(body, "is revoked") || strings.Contains(body, ">live<") {
		t.Fatalf("after revoking:\n%s", body)
	}
	if d := decideNow(); d.Outcome != policy.Deny {
		t.Fatalf("a revoked token decided: %+v", d)
	}
}
