package console

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// OIDC is sign-in at the people's OpenID provider, in the browser:
// authorization code with PKCE, the console as the client.
type OIDC struct {
	Issuer, ClientID string
	Scopes           []string
	// RedirectURL is the console's callback as browsers reach it
	// (<server>/ui/oidc/callback); it is registered at the provider.
	RedirectURL string
	// Login checks the provider's ID token (signature, issuer, audience,
	// expiry, nonce) and opens a Warden session, whose token it returns.
	Login func(ctx context.Context, rawIDToken, nonce string) (string, error)
	// NoRole is the error Login returns for a person without a role.
	NoRole error
}

// oidcCookie binds a sign-in to the browser that started it: the
// provider's answer is taken only with it, so that nobody can sign another
// person's browser in as themselves (login CSRF). Lax, not Strict: it comes
// back on the provider's redirect, a navigation from another site.
const oidcCookie = "warden_ui_oidc"

func (c *Console) bindingCookie(value string, maxAge int) *http.Cookie {
	ck := c.cookie(oidcCookie, value, maxAge)
	ck.SameSite = http.SameSiteLaxMode
	if !c.cfg.SecureCookies {
		ck.Path = "/ui/oidc/"
	}
	return ck
}

// pendingLogin is a sign-in sent to the provider, by its state.
type pendingLogin struct {
	nonce, verifier string
	expires         time.Time
}

// maxPending bounds the sign-ins waiting for the provider; pendingTTL is
// how long one may take.
const (
	maxPending = 1024
	pendingTTL = 10 * time.Minute
)

type oidcFlow struct {
	cfg OIDC
	mu  sync.Mutex
	// provider is discovered on first use, again after a failure.
	provider *oidc.Provider
	pending  map[string]pendingLogin
}

func (f *oidcFlow) oauth(ctx context.Context) (*oauth2.Config, error) {
	f.mu.Lock()
	p := f.provider
	f.mu.Unlock()
	if p == nil {
		var err error
		if p, err = oidc.NewProvider(ctx, f.cfg.Issuer); err != nil {
			return nil, err
		}
		f.mu.Lock()
		f.provider = p
		f.mu.Unlock()
	}
	return &oauth2.Config{ClientID: f.cfg.ClientID, Endpoint: p.Endpoint(), RedirectURL: f.cfg.RedirectURL, Scopes: f.cfg.Scopes}, nil
}

// oidcStart sends the browser to the provider.
func (c *Console) oidcStart(w http.ResponseWriter, r *http.Request) {
	f := c.oidc
	oc, err := f.oauth(r.Context())
	if err != nil {
		c.log.Error("console: the OpenID provider cannot be reached", "issuer", f.cfg.Issuer, "err", err)
		c.loginForm(w, http.StatusBadGateway, "The sign-in provider cannot be reached; try again, or sign in with a token.")
		return
	}
	state, nonce, verifier := randomID(), randomID(), oauth2.GenerateVerifier()
	now := c.cfg.Now()
	f.mu.Lock()
	for s, p := range f.pending {
		if now.After(p.expires) {
			delete(f.pending, s)
		}
	}
	if len(f.pending) >= maxPending {
		f.mu.Unlock()
		c.loginForm(w, http.StatusServiceUnavailable, "Too many sign-ins are waiting for the provider; try again in a few minutes.")
		return
	}
	f.pending[state] = pendingLogin{nonce: nonce, verifier: verifier, expires: now.Add(pendingTTL)}
	f.mu.Unlock()
	http.SetCookie(w, c.bindingCookie(state, int(pendingTTL.Seconds())))
	http.Redirect(w, r, oc.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce)), http.StatusSeeOther)
}

// oidcCallback takes the provider's answer: the state must be the one
// this browser started with, and is used once; the code is exchanged with
// its PKCE verifier, and the ID token for a Warden session.
func (c *Console) oidcCallback(w http.ResponseWriter, r *http.Request) {
	f := c.oidc
	q := r.URL.Query()
	state := q.Get("state")
	ck, err := r.Cookie(c.name(oidcCookie))
	http.SetCookie(w, c.bindingCookie("", -1))
	if err != nil || !same(ck.Value, state) {
		c.log.Warn("console: sign-in answer refused: not the sign-in this browser started", "remote", r.RemoteAddr)
		c.loginForm(w, http.StatusBadRequest, "That sign-in was not started in this browser; start again.")
		return
	}
	f.mu.Lock()
	p, ok := f.pending[state]
	delete(f.pending, state)
	f.mu.Unlock()
	switch {
	case !ok || c.cfg.Now().After(p.expires):
		c.loginForm(w, http.StatusBadRequest, "That sign-in has expired or was used; start again.")
		return
	case q.Get("error") != "":
		c.log.Info("console: the provider refused the sign-in", "error", q.Get("error"))
		c.loginForm(w, http.StatusUnauthorized, "The provider refused the sign-in ("+short(q.Get("error"), 64)+").")
		return
	case q.Get("code") == "":
		c.loginForm(w, http.StatusBadRequest, "The provider's answer has no code.")
		return
	}
	oc, err := f.oauth(r.Context())
	var tok *oauth2.Token
	if err == nil {
		tok, err = oc.Exchange(r.Context(), q.Get("code"), oauth2.VerifierOption(p.verifier))
	}
	if err != nil {
		c.log.Warn("console: the code could not be exchanged at the provider", "err", err)
		c.loginForm(w, http.StatusBadGateway, "The provider did not exchange the code; start again.")
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		c.loginForm(w, http.StatusBadGateway, "The provider answered without an ID token (is the openid scope allowed for the client?).")
		return
	}
	session, err := f.cfg.Login(r.Context(), raw, p.nonce)
	if err != nil {
		c.log.Warn("console: sign-in refused", "err", err, "remote", r.RemoteAddr)
		msg := "The provider's ID token was not accepted."
		if f.cfg.NoRole != nil && errors.Is(err, f.cfg.NoRole) {
			msg = "You signed in at the provider, but your groups give you no Warden role; ask an admin."
		}
		c.loginForm(w, http.StatusForbidden, msg)
		return
	}
	p2, ok := c.d.Authenticate(r.Context(), session)
	if !ok {
		c.loginForm(w, http.StatusServiceUnavailable, "The session could not be opened; try again.")
		return
	}
	id := c.openSession(session, p2.ID)
	http.SetCookie(w, c.cookie(sessionCookie, id, int(c.cfg.SessionTTL.Seconds())))
	// A page, not a redirect: a SameSite=Strict cookie set on a navigation
	// that began at another site is not sent on a redirect of that
	// navigation; the page's own navigation sends it.
	c.render(w, http.StatusOK, "signedin", view{Title: "Signed in"})
}
