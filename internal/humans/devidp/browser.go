package devidp

import (
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// The person at the browser. The demo and tests use these helpers to sign in
// and answer device authorizations the way a person would at the provider's
// pages, over HTTP.

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
		return "", fmt.Errorf("devidp: authorize did not lead to the sign-in page: %s %s", resp.Status, resp.Request.URL)
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
		Transport: p.transport,
		Jar:       jar,
		Timeout:   10 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if !strings.HasPrefix(req.URL.String(), p.Issuer+"/") {
				return http.ErrUseLastResponse
			}
			if len(via) >= 10 {
				return errors.New("devidp: too many redirects")
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
		return fmt.Errorf("devidp: provider answered %s: %s", q.Get("error"), q.Get("error_description"))
	}
	return nil
}

var alertRE = regexp.MustCompile(`<p role="alert">([^<]*)</p>`)

// pageError explains a page that did not do what the person wanted. The
// pages never echo a password, so neither does the error.
func pageError(page string, resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	msg := strings.TrimSpace(string(body))
	if m := alertRE.FindSubmatch(body); m != nil {
		msg = html.UnescapeString(string(m[1]))
	}
	return fmt.Errorf("devidp: %s refused (%s): %s", page, resp.Status, msg)
}
