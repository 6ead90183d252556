package console_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/policy"
)

// browserPolicy denies one resource with a reason, asks one person's
// approval for another, and allows the rest.
const browserPolicy = `package warden.authz

allow := true

deny contains "secret_is_off_limits" if input.resource.id == "kb/secret"

obligations["require_approvals"] := {"count": 1} if input.resource.id == "plc/set_setpoint"
`

// chromium finds the browser, or skips the test saying why.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium: install Debian's chromium package (.ci/run does) to run the console's browser tests")
	return ""
}

// In a real browser, a person signs in with the admin token, finds a
// denied decision and opens it, sees its inclusion proof verified,
// approves a pending request (the agent's next identical call is
// allowed), and quarantines the agent (its next decision is denied).
func TestConsoleInABrowser(t *testing.T) {
	t.Parallel()
	exe := chromium(t)
	w := apptest.Start(t, func(c *config.Config) { c.Audit.CheckpointInterval = 50 * time.Millisecond })
	ctx := context.Background()
	activate(t, w, browserPolicy, "browser test")
	const agent = "ai-agent://dev/plant/tuner"
	tok := agentToken(t, w, agent, "tuner")
	decideOn := func(resource, args string) decide.Decision {
		t.Helper()
		d, err := w.App.Decide.Decide(ctx, decide.InProcess("plant-gw", "warden"), &decide.Request{Token: tok.AccessToken, Action: "tools/call",
			Resource: decide.Resource{Kind: "mcp.tool", ID: resource}, Args: []byte(args)})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	denied := decideOn("kb/secret", `{}`)
	if denied.Outcome != policy.Deny {
		t.Fatalf("kb/secret: %+v", denied)
	}
	const setpoint = `{"oven": 3, "setpoint": 245}`
	held := decideOn("plc/set_setpoint", setpoint)
	if held.Outcome != policy.PendingApproval || held.Approval == nil {
		t.Fatalf("plc/set_setpoint: %+v", held)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if cp, err := w.App.Audit.Checkpoint(ctx); err == nil && cp.Size > held.AuditIndex {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint covers the decisions")
		}
	}

	alloc, cancel := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.Flag("disable-dev-shm-usage", true))...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	bctx, cancel = context.WithTimeout(bctx, 90*time.Second)
	defer cancel()
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			html, _ := chromedp.Run(bctx, chromedp.OuterHTML("html"))
			t.Fatalf("%s: %v\npage:\n%s", what, err, html)
		}
	}
	// at waits until the page's address holds s: a step that submits a
	// form finishes before the next page is there.
	at := func(s string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			loc, err := chromedp.Run(bctx, chromedp.Location())
			if err == nil && strings.Contains(loc, s) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the browser is at %s, not at a page with %q", loc, s)
			}
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("%s: %v", sel, err)
		}
		return s
	}

	// Sign in.
	do("sign in", chromedp.Navigate(w.URL+"/ui/"), chromedp.WaitVisible("#token"),
		chromedp.SendKeys("#token", w.AdminToken), chromedp.Submit("#token"), chromedp.WaitVisible("#c-decisions"))
	if h := text("h1"); h != "Overview" {
		t.Fatalf("after sign-in: %q", h)
	}

	// Find the denied decision through the explorer's form and open it.
	do("search", chromedp.Click(`//nav//a[text()="Decisions"]`), chromedp.WaitVisible("#outcome"),
		chromedp.SetValue("#outcome", "deny"), chromedp.SendKeys("#reason", "secret_is_off_limits"), chromedp.Submit("#outcome"))
	at("reason=secret_is_off_limits")
	do("results", chromedp.WaitVisible("#decisions"))
	if rows := text("#decisions tbody"); !strings.Contains(rows, "kb/secret") || strings.Contains(rows, "plc/set_setpoint") {
		t.Fatalf("the search found:\n%s", rows)
	}
	do("open the decision", chromedp.Click(fmt.Sprintf(`//a[@href="/ui/decisions/%d"]`, denied.AuditIndex)), chromedp.WaitVisible(`//h1[starts-with(text(), "Decision")]`))
	if page := text("main"); !strings.Contains(page, denied.ID) || !strings.Contains(page, "verified against the signed checkpoint") || strings.Contains(page, "NOT VERIFIED") {
		t.Fatalf("the decision's page:\n%s", page)
	}

	// Approve the pending request; the agent's next identical call runs.
	do("approve", chromedp.Click(`//nav//a[text()="Approvals"]`), chromedp.WaitVisible("#reason-"+held.Approval.ID),
		chromedp.SendKeys("#reason-"+held.Approval.ID, "oven 3 is due for it"),
		chromedp.Click(fmt.Sprintf(`//form[@action="/ui/approvals/%s"]//button[@value="approve"]`, held.Approval.ID)),
		chromedp.WaitVisible(".flash"))
	if f := text(".flash"); !strings.Contains(f, "approved") {
		t.Fatalf("after approving: %q", f)
	}
	if d := decideOn("plc/set_setpoint", setpoint); d.Outcome != policy.Allow {
		t.Fatalf("after the approval: %+v", d)
	}

	// Quarantine the agent from its page, reached from the decision.
	do("open the agent", chromedp.Navigate(fmt.Sprintf("%s/ui/decisions/%d", w.URL, denied.AuditIndex)),
		chromedp.Click(`//a[text()="`+agent+`"]`), chromedp.WaitVisible("#agent-status"))
	if s := text("#agent-status"); s != "active" {
		t.Fatalf("status %q", s)
	}
	do("quarantine", chromedp.SetValue("#action", "quarantine"), chromedp.SendKeys("#reason", "it read a planted instruction"),
		chromedp.Submit("#reason"), chromedp.WaitVisible(".flash"))
	if s := text("#agent-status"); s != "quarantined" {
		t.Fatalf("after quarantine: %q (%s)", s, text(".flash"))
	}
	d := decideOn("kb/search", `{}`)
	if d.Outcome != policy.Deny {
		t.Fatalf("a quarantined agent's next decision: %+v", d)
	}
	t.Logf("after quarantine: %s %v", d.Outcome, d.Reasons)
}
