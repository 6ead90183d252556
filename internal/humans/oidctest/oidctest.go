// Package oidctest runs a real OpenID Connect provider inside Go tests.
//
// The protocol endpoints (discovery, JWKS, authorize, token, device
// authorization, userinfo, revocation, end session) are served by
// github.com/zitadel/oidc/v3/pkg/op, an OpenID-certified implementation; this
// package adds only in-memory storage, a sign-in page, a device verification
// page, and helpers that play the person at the browser. Relying-party code
// under test talks to it over HTTP exactly as it would to a production
// provider, so what it accepts here it accepts there.
package oidctest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"
)

// ClientID is a public native client: PKCE S256 required, loopback redirect
// URIs on any port (http://127.0.0.1:<any>/callback and
// http://localhost:<any>/callback), grant types authorization_code,
// refresh_token and urn:ietf:params:oauth:grant-type:device_code; scopes
// openid email profile groups offline_access.
const ClientID = "warden-cli"

// OtherClientID is a second public client, configured like ClientID, for
// "ID token issued to another audience" tests.
const OtherClientID = "other-app"

// User is a person who can sign in at the provider.
type User struct {
	ID, Username, Password, Email string
	// Groups is the "groups" claim (a JSON array of strings) of ID tokens and
	// userinfo when the scope "groups" is asked for.
	Groups []string
}

// Provider is a running OpenID Connect provider.
type Provider struct {
	// Issuer is http://127.0.0.1:<port>, no trailing slash.
	Issuer string

	store *storage
	op    *op.Provider
}

// Start starts a provider on 127.0.0.1 on a free port, with these users; it
// stops at t.Cleanup. A user without an ID gets its Username as ID.
func Start(t testing.TB, users ...User) *Provider {
	t.Helper()
	users = slices.Clone(users)
	for i := range users {
		if users[i].ID == "" {
			users[i].ID = users[i].Username
		}
	}
	store, err := newStorage(users)
	if err != nil {
		t.Fatalf("oidctest: %v", err)
	}
	// An unstarted httptest server has already bound its listener, so the
	// issuer URL is known before the provider, which needs it, is built.
	srv := httptest.NewUnstartedServer(nil)
	p := &Provider{Issuer: "http://" + srv.Listener.Addr().String(), store: store}

	config := &op.Config{
		CodeMethodS256:        true,
		GrantTypeRefreshToken: true,
		SupportedScopes:       scopesSupported,
		SupportedClaims:       append(slices.Clone(op.DefaultSupportedClaims), "groups"),
		DeviceAuthorization: op.DeviceAuthorizationConfig{
			Lifetime: 5 * time.Minute,
			// The least an RFC 8628 client (golang.org/x/oauth2) waits between polls;
			// 0 would mean its default of 5s.
			PollInterval: time.Second,
			UserFormPath: "/device",
			UserCode:     op.UserCodeBase20,
		},
	}
	// Opaque access tokens are op-encrypted "tokenID:subject" strings.
	rand.Read(config.CryptoKey[:])
	p.op, err = op.NewProvider(config, store, op.StaticIssuer(p.Issuer),
		op.WithAllowInsecure()) // http:// issuer; op refuses one otherwise
	if err != nil {
		srv.Close()
		t.Fatalf("oidctest: %v", err)
	}
	// op.AuthCallbackURL reads the issuer from the request context, which op
	// sets only on its own routes; the sign-in page needs this interceptor too.
	withIssuer := op.NewIssuerInterceptor(p.op.IssuerFromRequest)

	mux := http.NewServeMux()
	mux.Handle("/login", withIssuer.HandlerFunc(p.loginPage))
	mux.HandleFunc("GET /device", p.deviceStart)
	mux.HandleFunc("POST /device/login", p.deviceLogin)
	mux.HandleFunc("POST /device/confirm", p.deviceConfirm)
	mux.Handle("/", p.op)
	srv.Config.Handler = mux
	srv.Start()
	t.Cleanup(srv.Close)
	return p
}

// BrowserLogin plays the browser: it GETs authURL (an authorize URL the
// relying party built, with PKCE), follows the provider's redirects to its
// sign-in page, submits username/password, and returns the final redirect URL
// the provider sends the browser to (the client's redirect_uri with code and
// state) without requesting it.
//
// A wrong password is an error. So is an OAuth error response
// (redirect_uri?error=...), e.g. for a request without PKCE; then the returned
// URL is that redirect, for callers that want to inspect it.
func (p *Provider) BrowserLogin(authURL, username, password string) (string, error) {
	b := p.browser()
	resp, err := b.Get(authURL)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if loc, left := p.leftProvider(resp); left {
		return loc, redirectError(loc) // refused before anyone signed in
	}
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/login" {
		return "", fmt.Errorf("oidctest: authorize did not lead to the sign-in page: %s %s", resp.Status, resp.Request.URL)
	}
	resp, err = b.PostForm(resp.Request.URL.String(), url.Values{"username": {username}, "password": {password}})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	loc, left := p.leftProvider(resp)
	if !left {
		return "", pageError("sign-in", resp)
	}
	return loc, redirectError(loc)
}

// ApproveDevice plays the person at the verification page for a device
// authorization (RFC 8628): enters userCode, signs in as username/password,
// approves. After it returns nil, the device polling at the token endpoint
// gets tokens (with an id_token) for that user.
func (p *Provider) ApproveDevice(userCode, username, password string) error {
	return p.answerDevice(userCode, username, password, "allow")
}

// DenyDevice is ApproveDevice where the person refuses; polling then yields
// access_denied.
func (p *Provider) DenyDevice(userCode, username, password string) error {
	return p.answerDevice(userCode, username, password, "deny")
}

func (p *Provider) answerDevice(userCode, username, password, action string) error {
	b := p.browser()
	// The person opens the verification URI the device showed them...
	resp, err := b.Get(p.Issuer + "/device?user_code=" + url.QueryEscape(userCode))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return pageError("device verification", resp)
	}
	// ...enters the code and signs in...
	resp, err = b.PostForm(p.Issuer+"/device/login", url.Values{"user_code": {userCode}, "username": {username}, "password": {password}})
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return pageError("device sign-in", resp)
	}
	// ...and answers; the consent cookie set at sign-in says who and for which code.
	resp, err = b.PostForm(p.Issuer+"/device/confirm", url.Values{"action": {action}})
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return pageError("device confirmation", resp)
	}
	return nil
}

// browser is an HTTP client with cookies that follows redirects within the
// provider and stops at the first one leaving it: that is the redirect to the
// relying party, the result, not a page to load.
func (p *Provider) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar:     jar,
		Timeout: 10 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if !strings.HasPrefix(req.URL.String(), p.Issuer+"/") {
				return http.ErrUseLastResponse
			}
			if len(via) >= 10 {
				return errors.New("oidctest: too many redirects")
			}
			return nil
		},
	}
}

// leftProvider reports the redirect away from the provider that the browser
// stopped at, if it did.
func (p *Provider) leftProvider(resp *http.Response) (string, bool) {
	loc, err := resp.Location()
	if err != nil || resp.StatusCode < 300 || resp.StatusCode > 399 {
		return "", false
	}
	return loc.String(), true
}

// redirectError is the OAuth error (RFC 6749 4.1.2.1) a redirect carries, if any.
func redirectError(redirect string) error {
	u, err := url.Parse(redirect)
	if err != nil {
		return err
	}
	q := u.Query()
	if q.Get("error") != "" {
		return fmt.Errorf("oidctest: provider answered %s: %s", q.Get("error"), q.Get("error_description"))
	}
	return nil
}

var alertRE = regexp.MustCompile(`<p role="alert">([^<]*)</p>`)

// pageError explains a page that did not do what the person wanted.
func pageError(page string, resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	msg := strings.TrimSpace(string(body))
	if m := alertRE.FindSubmatch(body); m != nil {
		msg = html.UnescapeString(string(m[1]))
	}
	return fmt.Errorf("oidctest: %s refused (%s): %s", page, resp.Status, msg)
}
