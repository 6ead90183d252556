package console

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/warden-run/warden/internal/identity"
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

// pendingLogin is a sign-in sent to the provider: sealed (AES-GCM, with a
// key of this process, as the master key seals stored secrets) in the
// binding cookie, so that the server keeps nothing
// for sign-ins that were only started, and cannot be filled by them.
type pendingLogin struct {
	State    string    `json:"s"`
	Nonce    string    `json:"n"`
	Verifier string    `json:"v"`
	Expires  time.Time `json:"e"`
}

// confirmation is a sign-in the provider vouched for, waiting for the
// person to confirm, on a page of this origin, that they mean to be signed
// in as who the provider said: a browser sent to the callback with
// someone else's sign-in (its cookie set from another port of the host)
// shows that someone's name and goes no further.
type confirmation struct {
	session   string // the Warden session token
	principal string
	expires   time.Time
}

const (
	pendingTTL = 10 * time.Minute
	confirmTTL = 5 * time.Minute
	// maxConfirmations bounds the sign-ins waiting to be confirmed (each
	// took a person signing in at the provider); the oldest go first.
	maxConfirmations = 256
)

type oidcFlow struct {
	cfg OIDC
	// key seals pending sign-ins: a key of this process alone.
	key *identity.MasterKey
	mu  sync.Mutex
	// provider is discovered on first use, again after a failure.
	provider *oidc.Provider
	confirms map[string]confirmation
}

func newOIDCFlow(cfg OIDC) (*oidcFlow, error) {
	secret := make([]byte, 32)
	rand.Read(secret)
	key, err := identity.NewMasterKey(secret)
	if err != nil {
		return nil, err
	}
	return &oidcFlow{cfg: cfg, key: key, confirms: map[string]confirmation{}}, nil
}

func (f *oidcFlow) seal(p pendingLogin) string {
	b, _ := json.Marshal(p)
	return base64.RawURLEncoding.EncodeToString(f.key.Seal(b, oidcCookie))
}

func (f *oidcFlow) open(v string) (pendingLogin, bool) {
	var p pendingLogin
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return p, false
	}
	plain, err := f.key.Open(b, oidcCookie)
	if err != nil || json.Unmarshal(plain, &p) != nil {
		return p, false
	}
	return p, true
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
	p := pendingLogin{State: randomID(), Nonce: randomID(), Verifier: oauth2.GenerateVerifier(), Expires: c.cfg.Now().Add(pendingTTL)}
	http.SetCookie(w, c.bindingCookie(f.seal(p), int(pendingTTL.Seconds())))
	state, nonce, verifier := p.State, p.Nonce, p.Verifier
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
	var p pendingLogin
	ok := err == nil
	if ok {
		p, ok = f.open(ck.Value)
	}
	if !ok || !same(p.State, state) {
		c.log.Warn("console: sign-in answer refused: not the sign-in this browser started", "remote", r.RemoteAddr)
		c.loginForm(w, http.StatusBadRequest, "That sign-in was not started in this browser; start again.")
		return
	}
	switch {
	case c.cfg.Now().After(p.Expires):
		c.loginForm(w, http.StatusBadRequest, "That sign-in has expired; start again.")
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
		tok, err = oc.Exchange(r.Context(), q.Get("code"), oauth2.VerifierOption(p.Verifier))
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
	session, err := f.cfg.Login(r.Context(), raw, p.Nonce)
	if err != nil {
		c.log.Warn("console: sign-in refused", "err", err, "remote", r.RemoteAddr)
		msg := "The provider's ID token was not accepted."
		if f.cfg.NoRole != nil && errors.Is(err, f.cfg.NoRole) {
			msg = "You signed in at the provider, but your groups give you no Warden role; ask an admin."
		}
		c.loginForm(w, http.StatusForbidden, msg)
		return
	}
	who, ok := c.d.Authenticate(r.Context(), session)
	if !ok {
		c.loginForm(w, http.StatusServiceUnavailable, "The session could not be opened; try again.")
		return
	}
	id := randomID()
	now := c.cfg.Now()
	f.mu.Lock()
	for k, cf := range f.confirms {
		if now.After(cf.expires) {
			delete(f.confirms, k)
		}
	}
	for len(f.confirms) >= maxConfirmations {
		oldest := ""
		for k, cf := range f.confirms {
			if oldest == "" || cf.expires.Before(f.confirms[oldest].expires) {
				oldest = k
			}
		}
		delete(f.confirms, oldest)
	}
	f.confirms[id] = confirmation{session: session, principal: who.ID, expires: now.Add(confirmTTL)}
	f.mu.Unlock()
	name := who.ID
	if who.Email != "" {
		name = who.Email + " (" + who.ID + ")"
	}
	c.render(w, http.StatusOK, "confirm", view{Title: "Sign in", CSRF: id, Page: name})
}

// oidcConfirm opens the console session of a sign-in the person confirmed
// on the console's own page.
func (c *Console) oidcConfirm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if !c.sameOrigin(r) || r.ParseForm() != nil {
		c.loginForm(w, http.StatusForbidden, "That sign-in came from another site.")
		return
	}
	f := c.oidc
	id := r.PostForm.Get("confirm")
	f.mu.Lock()
	cf, ok := f.confirms[id]
	delete(f.confirms, id)
	f.mu.Unlock()
	if id == "" || !ok || c.cfg.Now().After(cf.expires) {
		c.loginForm(w, http.StatusBadRequest, "That sign-in has expired or was used; start again.")
		return
	}
	sid := c.openSession(cf.session, cf.principal)
	c.log.Info("console: signed in", "principal", cf.principal, "via", "openid")
	http.SetCookie(w, c.cookie(sessionCookie, sid, int(c.cfg.SessionTTL.Seconds())))
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}
