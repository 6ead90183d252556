package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/humans"
	"github.com/warden-run/warden/internal/humans/oidctest"
)

// A person signs in to the console at the OpenID provider (authorization
// code with PKCE, a real provider): the console shows who they are and
// what their role allows. The provider's answer is refused in a browser
// that did not start the sign-in, and a second time; a person whose
// groups give no role is told so.
func TestConsoleOIDCSignIn(t *testing.T) {
	t.Parallel()
	approver := oidctest.User{ID: "u-ada", Username: "ada", Password: "correct horse", Email: "ada@example.com", Groups: []string{"g-approver"}}
	stranger := oidctest.User{ID: "u-eve", Username: "eve", Password: "battery staple", Email: "eve@example.com", Groups: []string{"g-nothing"}}
	p := oidctest.Start(t, approver, stranger)
	w := apptest.Start(t, func(c *config.Config) {
		c.Humans = humans.Config{Issuer: p.Issuer, ClientID: oidctest.ClientID, Groups: map[string][]string{"g-approver": {"approver"}}}
	})
	start := func(b *browser) string {
		t.Helper()
		_, login := b.do("GET", "/ui/login", nil)
		if !strings.Contains(login, `href="/ui/oidc/start"`) {
			t.Fatalf("the sign-in page offers no provider:\n%s", login)
		}
		res, _ := b.do("GET", "/ui/oidc/start", nil)
		auth := res.Header.Get("Location")
		if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(auth, p.Issuer) || !strings.Contains(auth, "code_challenge_method=S256") {
			t.Fatalf("start: %d %s", res.StatusCode, auth)
		}
		return auth
	}
	callback := func(auth, user, password string) string {
		t.Helper()
		back, err := p.BrowserLogin(auth, user, password)
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(back)
		if err != nil || u.Path != "/ui/oidc/callback" {
			t.Fatalf("the provider sent the browser to %s", back)
		}
		return u.Path + "?" + u.RawQuery
	}

	// Sign-ins that are only started keep nothing on the server: many of
	// them block no one.
	for range 2000 {
		if res, _ := newBrowser(t, w.URL).do("GET", "/ui/oidc/start", nil); res.StatusCode != http.StatusSeeOther {
			t.Fatalf("start: %d", res.StatusCode)
		}
	}
	b := newBrowser(t, w.URL)
	back := callback(start(b), "ada", "correct horse")

	// Another browser with the same answer: not the sign-in it started.
	other := newBrowser(t, w.URL)
	if res, page := other.do("GET", back, nil); res.StatusCode != http.StatusBadRequest || !strings.Contains(page, "not started in this browser") {
		t.Fatalf("another browser: %d\n%s", res.StatusCode, page)
	}
	if res, _ := other.do("GET", "/ui/", nil); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("the other browser is signed in: %d", res.StatusCode)
	}

	res, page := b.do("GET", back, nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(page, "ada@example.com") || !strings.Contains(page, "Continue as this person") {
		t.Fatalf("callback: %d\n%s", res.StatusCode, page)
	}
	// Not signed in until the person confirms, on this origin's page: a
	// browser sent to someone else's callback goes no further.
	if res, _ := b.do("GET", "/ui/", nil); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("signed in before confirming: %d", res.StatusCode)
	}
	confirm := regexpFind(t, page, `name="confirm" value="([^"]+)"`)
	req, _ := http.NewRequest("POST", w.URL+"/ui/oidc/confirm", strings.NewReader(url.Values{"confirm": {confirm}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://127.0.0.1:1")
	if res, err := b.c.Do(req); err != nil || res.StatusCode != http.StatusForbidden {
		t.Fatalf("a confirmation from another origin: %v %v", res, err)
	}
	if res, _ := b.do("POST", "/ui/oidc/confirm", url.Values{"confirm": {confirm}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("confirm: %d", res.StatusCode)
	}
	if res, _ := b.do("POST", "/ui/oidc/confirm", url.Values{"confirm": {confirm}}); res.StatusCode != http.StatusBadRequest {
		t.Fatalf("a confirmation used twice: %d", res.StatusCode)
	}
	res, page = b.do("GET", "/ui/", nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(page, "human:"+p.Issuer+"#u-ada") || !strings.Contains(page, `href="/ui/approvals"`) {
		t.Fatalf("overview after sign-in: %d\n%s", res.StatusCode, page)
	}
	if strings.Contains(page, `href="/ui/decisions"`) {
		t.Fatal("an approver is offered the audit log's decisions")
	}
	if res, _ := b.do("GET", "/ui/decisions", nil); res.StatusCode != http.StatusForbidden {
		t.Fatalf("an approver reads decisions: %d", res.StatusCode)
	}
	// The same answer again: used.
	if res, _ := b.do("GET", back, nil); res.StatusCode != http.StatusBadRequest {
		t.Fatalf("the answer replayed: %d", res.StatusCode)
	}

	// Someone the provider knows whose groups give no Warden role.
	e := newBrowser(t, w.URL)
	if res, page := e.do("GET", callback(start(e), "eve", "battery staple"), nil); res.StatusCode != http.StatusForbidden || !strings.Contains(page, "no Warden role") {
		t.Fatalf("no role: %d\n%s", res.StatusCode, page)
	}
}
