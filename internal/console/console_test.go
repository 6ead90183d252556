package console_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/console"
	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/humans"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/sdk"
)

// browser is an HTTP client that keeps cookies and does not follow
// redirects, as a test of what each answer says.
type browser struct {
	t    testing.TB
	base string
	c    *http.Client
}

func newBrowser(t testing.TB, base string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: base, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(method, path string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, b.base+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return res, string(out)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrf(t testing.TB, page string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", page)
	}
	return m[1]
}

// signIn signs in with token and returns the overview page.
func (b *browser) signIn(token string) (*http.Response, string) {
	b.t.Helper()
	_, page := b.do("GET", "/ui/login", nil)
	res, body := b.do("POST", "/ui/login", url.Values{"csrf": {csrf(b.t, page)}, "token": {token}})
	if res.StatusCode != http.StatusSeeOther {
		return res, body
	}
	return b.do("GET", "/ui/", nil)
}

// A person signs in with the admin token and sees the overview and the
// agents; every page carries a policy that allows no script; the session
// cookie is HttpOnly and SameSite=Strict; a wrong token, a form without
// its CSRF token, and a token rotated meanwhile are refused.
func TestConsole(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, func(c *config.Config) { c.Audit.CheckpointInterval = 50 * time.Millisecond })
	ctx := context.Background()
	v := activate(t, w, "package warden.authz\ndeny contains \"not_today\" if true\n", "test")
	w.Register(t, "ai-agent://dev/ops/console-shown", "reader")

	b := newBrowser(t, w.URL)
	if res, _ := b.do("GET", "/ui/", nil); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/ui/login" {
		t.Fatalf("signed out: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	if res, page := b.signIn("wdn_admin_" + strings.Repeat("x", 43)); res.StatusCode != http.StatusUnauthorized || !strings.Contains(page, "not valid") {
		t.Fatalf("a wrong token: %d", res.StatusCode)
	}
	// A post without the form's CSRF token.
	if res, _ := b.do("POST", "/ui/login", url.Values{"token": {w.AdminToken}}); res.StatusCode != http.StatusForbidden {
		t.Fatalf("sign-in without its CSRF token: %d", res.StatusCode)
	}

	res, page := b.signIn(w.AdminToken)
	if res.StatusCode != http.StatusOK || !strings.Contains(page, "Overview") || !strings.Contains(page, v) {
		t.Fatalf("overview: %d\n%s", res.StatusCode, page)
	}
	if strings.Contains(page, w.AdminToken) {
		t.Fatal("the page shows the admin token")
	}
	for _, c := range b.c.Jar.Cookies(mustURL(t, w.URL+"/ui/")) {
		if strings.Contains(c.Value, w.AdminToken) {
			t.Fatal("a cookie holds the admin token")
		}
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
		t.Fatalf("CSP %q", csp)
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "style=") || strings.Contains(page, " on") && regexp.MustCompile(`\son[a-z]+=`).MatchString(page) {
		t.Fatal("a page with a script, an inline style or an event handler")
	}
	_, agents := b.do("GET", "/ui/agents", nil)
	if !strings.Contains(agents, "ai-agent://dev/ops/console-shown") {
		t.Fatalf("agents page:\n%s", agents)
	}

	// A denied decision: listed, opened, its inclusion proof verified
	// against the latest signed checkpoint.
	k := w.Register(t, "ai-agent://dev/ops/console-denied", "reader")
	client, err := sdk.NewClient(w.URL, "ai-agent://dev/ops/console-denied", k)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := client.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d, err := w.App.Decide.Decide(ctx, decide.InProcess("console-test", "warden"), &decide.Request{Token: tok.AccessToken, Action: "tools/call",
		Resource: decide.Resource{Kind: "mcp.tool", ID: "kb/search"}})
	if err != nil || d.Outcome != policy.Deny {
		t.Fatalf("decision: %+v %v", d, err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if cp, err := w.App.Audit.Checkpoint(ctx); err == nil && cp.Size > d.AuditIndex {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint covers the decision")
		}
	}
	link := fmt.Sprintf(`href="/ui/decisions/%d"`, d.AuditIndex)
	if _, list := b.do("GET", "/ui/decisions?outcome=deny", nil); !strings.Contains(list, link) || !strings.Contains(list, "not_today") {
		t.Fatalf("decisions page without the denied one:\n%s", list)
	}
	_, one := b.do("GET", fmt.Sprintf("/ui/decisions/%d", d.AuditIndex), nil)
	if !strings.Contains(one, d.ID) || !strings.Contains(one, "verified against the signed checkpoint") || strings.Contains(one, "NOT VERIFIED") {
		t.Fatalf("decision page:\n%s", one)
	}

	// The session cookie's flags, as the server set them at sign-in.
	b2 := newBrowser(t, w.URL)
	_, form := b2.do("GET", "/ui/login", nil)
	res, _ = b2.do("POST", "/ui/login", url.Values{"csrf": {csrf(t, form)}, "token": {w.AdminToken}})
	set := strings.Join(res.Header.Values("Set-Cookie"), "\n")
	if !strings.Contains(set, "warden_ui=") || !strings.Contains(set, "HttpOnly") || !strings.Contains(set, "SameSite=Strict") {
		t.Fatalf("session cookie: %s", set)
	}

	// Sign-out needs the session's CSRF token.
	if res, _ := b.do("POST", "/ui/logout", url.Values{"csrf": {"forged"}}); res.StatusCode != http.StatusForbidden {
		t.Fatalf("sign-out with a forged CSRF token: %d", res.StatusCode)
	}
	// The admin token rotated: the console session opened with it ends.
	req, _ := http.NewRequest("POST", w.URL+"/v1/access/bootstrap/rotate", nil)
	req.Header.Set("Authorization", "Bearer "+w.AdminToken)
	rot, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rot.Body.Close()
	if rot.StatusCode != http.StatusOK {
		t.Fatalf("rotate: %d", rot.StatusCode)
	}
	if res, _ := b2.do("GET", "/ui/", nil); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("after the token changed: %d", res.StatusCode)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// The overview shows the audit log's decisions and their reasons only to
// roles that may read the audit log, and agents to those that may read
// agents: a viewer sees neither reasons nor, on the agents page, more
// than it may.
func TestOverviewFollowsRoles(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	ctx := context.Background()
	if _, err := w.App.Audit.Append(ctx, &audit.Entry{Kind: audit.KindDecision, DecisionID: "dec_x", Agent: "ai-agent://dev/ops/a",
		Action: "tools/call", Outcome: "deny", Reasons: []string{"reason_only_auditors_see"}, EnforcementPoint: "gw"}); err != nil {
		t.Fatal(err)
	}
	roles, err := humans.NewRoles(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		role      string
		seesAudit bool
	}{{"auditor", true}, {"approver", false}} {
		t.Run(c.role, func(t *testing.T) {
			con, err := console.New(console.Config{}, console.Deps{
				Authenticate: func(_ context.Context, token string) (humans.Principal, bool) {
					return humans.Principal{ID: "human:test#" + c.role, Roles: []string{c.role}, Human: true}, token == "token-of-"+c.role
				},
				Allows: roles.Allows, Agents: w.App.Registry.Agents, Audit: w.App.Audit, Policies: w.App.Policies,
			})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(con)
			defer srv.Close()
			b := newBrowser(t, srv.URL)
			res, page := b.signIn("token-of-" + c.role)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("sign-in: %d", res.StatusCode)
			}
			if got := strings.Contains(page, "reason_only_auditors_see"); got != c.seesAudit {
				t.Errorf("%s sees the deny reasons: %v, want %v", c.role, got, c.seesAudit)
			}
		})
	}
}

func regexpFind(t *testing.T, s, expr string) string {
	t.Helper()
	m := regexp.MustCompile(expr).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no %s in:\n%s", expr, s)
	}
	return m[1]
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// activate pushes src as a bundle's policy.rego and makes it the active
// version, whose id it returns.
func activate(t testing.TB, w *apptest.Instance, src, msg string) string {
	t.Helper()
	ctx := context.Background()
	v, _, _, err := w.App.Policies.Push(ctx, "admin:test", &policy.Bundle{Files: map[string][]byte{"policy.rego": []byte(src)}}, msg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.App.Policies.Activate(ctx, "admin:test", v.ID); err != nil {
		t.Fatal(err)
	}
	return v.ID
}

// agentToken registers agent with roles and returns an access token it
// got at the token endpoint.
func agentToken(t testing.TB, w *apptest.Instance, agent string, roles ...string) *sdk.Token {
	t.Helper()
	c, err := sdk.NewClient(w.URL, agent, w.Register(t, agent, roles...))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
