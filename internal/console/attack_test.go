package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/console"
	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/humans"
)

// paymentsPolicy asks one approval for every payment.
const paymentsPolicy = `package warden.authz

allow := true

obligations["require_approvals"] := {"count": 1} if startswith(input.resource.id, "payments/")
`

// What an agent puts in a request cannot hide from the person approving
// it what they approve: arguments are shown whole (a decoy note pushed the
// real amount past a cut before), characters that reverse or hide text are
// shown as their codes, and a queue flooded by the agent still shows how
// many wait and pages to the newest.
func TestApprovalsShowWhatIsApproved(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	ctx := context.Background()
	activate(t, w, paymentsPolicy, "payments")
	const agent = "ai-agent://dev/finance/payer"
	tok := agentToken(t, w, agent, "payer")
	ask := func(resource string, args any) decide.Decision {
		t.Helper()
		b, _ := json.Marshal(args)
		d, err := w.App.Decide.Decide(ctx, decide.InProcess("pay-gw", "warden"), &decide.Request{Token: tok.AccessToken, Action: "tools/call",
			Resource: decide.Resource{Kind: "mcp.tool", ID: resource}, Args: b})
		if err != nil || d.Approval == nil {
			t.Fatalf("%s: %+v %v", resource, d, err)
		}
		return d
	}
	decoy := ask("payments/transfer", map[string]any{"Amount": 100, "Beneficiary": "ACME Corp DE89370400440532013000",
		"Note": "Routine weekly vendor payment, pre-approved by finance" + strings.Repeat(" ", 200), "amount": 950000, "iban": "LT121000011101001000"})
	spoof := ask("payments/\u202etsil-etihw", map[string]any{"amount": "\u202e0001\u202c"})
	for i := range 60 {
		ask(fmt.Sprintf("payments/noise-%02d", i), map[string]any{"n": i})
	}
	newest := ask("payments/the-newest", map[string]any{"n": "last"})

	b := newBrowser(t, w.URL)
	if res, _ := b.signIn(w.AdminToken); res.StatusCode != http.StatusOK {
		t.Fatal(res.StatusCode)
	}
	_, page := b.do("GET", "/ui/approvals", nil)
	if !strings.Contains(page, "950000") || !strings.Contains(page, "LT121000011101001000") {
		t.Fatal("the approval's real amount and account are not on the page")
	}
	if !strings.Contains(page, `href="/ui/decisions?decision=`+decoy.ID+`"`) {
		t.Fatal("the request does not link to its decision")
	}
	if strings.ContainsRune(page, '\u202e') || !strings.Contains(page, `\u202E0001\u202C`) || !strings.Contains(page, `payments/\u202Etsil-etihw`) {
		t.Fatal("a right-to-left override is on the page as itself")
	}
	if !strings.Contains(page, "63 waiting") || strings.Contains(page, newest.Approval.ID) {
		t.Fatalf("the queue's count, or its first page holds the newest:\n%s", page)
	}
	next := regexpFind(t, page, `href="(/ui/approvals\?after=[^"]+)"`)
	if _, page2 := b.do("GET", strings.ReplaceAll(next, "&amp;", "&"), nil); !strings.Contains(page2, newest.Approval.ID) {
		t.Fatal("the newest request is on no page")
	}
	// The decision explorer finds the spoofed decision by its real name.
	if _, page := b.do("GET", "/ui/decisions?resource="+url.QueryEscape("\u202etsil"), nil); !strings.Contains(page, fmt.Sprintf(`href="/ui/decisions/%d"`, spoof.AuditIndex)) {
		t.Fatal("a search for a value with a format character found nothing")
	}
}

// A form posted from another origin, even the same host on another port
// (a site that can set cookies for it), is refused, signed in or not.
func TestConsoleRefusesOtherOrigins(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	b := newBrowser(t, w.URL)
	_, login := b.do("GET", "/ui/login", nil)
	post := func(path string, form url.Values, origin string) int {
		req, _ := http.NewRequest("POST", w.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", origin)
		res, err := b.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	u, _ := url.Parse(w.URL)
	evil := "http://" + u.Hostname() + ":1"
	if got := post("/ui/login", url.Values{"csrf": {csrf(t, login)}, "token": {w.AdminToken}}, evil); got != http.StatusForbidden {
		t.Fatalf("a sign-in posted from %s: %d", evil, got)
	}
	_, login = b.do("GET", "/ui/login", nil)
	if got := post("/ui/login", url.Values{"csrf": {csrf(t, login)}, "token": {w.AdminToken}}, w.URL); got != http.StatusSeeOther {
		t.Fatalf("a sign-in from the console's own origin: %d", got)
	}
	_, overview := b.do("GET", "/ui/", nil)
	if got := post("/ui/logout", url.Values{"csrf": {csrf(t, overview)}}, evil); got != http.StatusForbidden {
		t.Fatalf("a sign-out posted from %s: %d", evil, got)
	}
	if res, _ := b.do("GET", "/ui/", nil); res.StatusCode != http.StatusOK {
		t.Fatal("signed out by another origin")
	}
	// Nothing but the stylesheets is served from the embedded files.
	for path, want := range map[string]int{"/ui/static/console.css": 200, "/ui/static/..%2ftemplates/layout.html": 404, "/ui/static/..%2f": 404} {
		if res, _ := b.do("GET", path, nil); res.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, res.StatusCode, want)
		}
	}
}

// Over HTTPS the console's cookies carry the __Host- prefix, which no
// subdomain and no plain-HTTP site can set.
func TestSecureCookiesAreHostOnly(t *testing.T) {
	t.Parallel()
	con, err := console.New(console.Config{SecureCookies: true}, console.Deps{Authenticate: func(context.Context, string) (humans.Principal, bool) { return humans.Principal{}, false },
		Allows: func([]string, humans.Permission) bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	con.ServeHTTP(rec, httptest.NewRequest("GET", "/ui/login", nil))
	if c := rec.Header().Get("Set-Cookie"); !strings.HasPrefix(c, "__Host-warden_ui_login=") || !strings.Contains(c, "Path=/;") || !strings.Contains(c, "Secure") {
		t.Fatalf("cookie %q", c)
	}
}

// Signing in again and again ends the person's own oldest sessions, never
// another person's.
func TestSessionsArePerPerson(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	roles, _ := humans.NewRoles(nil)
	con, err := console.New(console.Config{}, console.Deps{
		Authenticate: func(_ context.Context, token string) (humans.Principal, bool) {
			role, ok := strings.CutPrefix(token, "token-of-")
			return humans.Principal{ID: "human:test#" + role, Roles: []string{role}, Human: true}, ok
		},
		Allows: roles.Allows, Agents: w.App.Registry.Agents, Audit: w.App.Audit, Policies: w.App.Policies,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(con)
	defer srv.Close()
	admin := newBrowser(t, srv.URL)
	if res, _ := admin.signIn("token-of-admin"); res.StatusCode != http.StatusOK {
		t.Fatal(res.StatusCode)
	}
	first := newBrowser(t, srv.URL)
	first.signIn("token-of-viewer")
	for range 1100 {
		newBrowser(t, srv.URL).signIn("token-of-viewer")
	}
	if res, _ := admin.do("GET", "/ui/agents", nil); res.StatusCode != http.StatusOK {
		t.Fatalf("another person's sign-ins ended the admin's session: %d", res.StatusCode)
	}
	if res, _ := first.do("GET", "/ui/", nil); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("the viewer's first session outlived sixteen newer ones: %d", res.StatusCode)
	}
}

// A search reads at most its byte budget, however large the entries an
// agent made, and offers to go on.
func TestSearchStopsAtItsBudget(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, func(c *config.Config) { c.Audit.Mode = "async" })
	ctx := context.Background()
	big := `{"blob":"` + strings.Repeat("x", 60<<10) + `"}`
	for i := range 700 {
		if _, err := w.App.Audit.Append(ctx, &audit.Entry{Time: time.Now(), Kind: audit.KindDecision, Action: "tools/call", Agent: "ai-agent://dev/ops/big",
			Outcome: "allow", DecisionID: fmt.Sprintf("dec_big_%d", i), Input: []byte(big)}); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if n, _ := w.App.Audit.TreeSize(ctx); n >= 700 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the entries were not written")
		}
	}
	b := newBrowser(t, w.URL)
	b.signIn(w.AdminToken)
	_, page := b.do("GET", "/ui/decisions?agent=nobody", nil)
	read := regexpFind(t, page, `\((\d+) read\)`)
	if n := atoi(t, read); n >= 700 || n < 100 {
		t.Fatalf("%d entries of 60 KB read for one page", n)
	}
	if !strings.Contains(page, "Older decisions") {
		t.Fatal("a search stopped at its budget does not offer to go on")
	}
}
