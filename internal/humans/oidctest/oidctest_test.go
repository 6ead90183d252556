package oidctest_test

import (
	"context"
	"crypto/rand"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/warden-run/warden/internal/humans/oidctest"
)

var alice = oidctest.User{
	ID:       "u-alice",
	Username: "alice",
	Password: "correct horse battery staple",
	Email:    "alice@example.com",
	Groups:   []string{"sre", "warden-admins"},
}

var scopes = []string{oidc.ScopeOpenID, "email", "profile", "groups", oidc.ScopeOfflineAccess}

// relyingParty discovers the provider the way production code does and
// returns the OAuth2 config of the CLI client and its ID token verifier.
func relyingParty(t *testing.T, p *oidctest.Provider) (*oidc.Provider, oauth2.Config, *oidc.IDTokenVerifier) {
	t.Helper()
	provider, err := oidc.NewProvider(t.Context(), p.Issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	cfg := oauth2.Config{
		ClientID:    oidctest.ClientID,
		Endpoint:    provider.Endpoint(),
		RedirectURL: "http://127.0.0.1:49152/callback", // nothing listens: BrowserLogin does not follow it
		Scopes:      scopes,
	}
	return provider, cfg, provider.Verifier(&oidc.Config{ClientID: oidctest.ClientID})
}

type claims struct {
	Email  string   `json:"email"`
	Groups []string `json:"groups"`
}

// verifyIDToken checks the token response's id_token is alice's.
func verifyIDToken(t *testing.T, v *oidc.IDTokenVerifier, tok *oauth2.Token) *oidc.IDToken {
	t.Helper()
	raw, ok := tok.Extra("id_token").(string)
	if !ok {
		t.Fatal("token response has no id_token")
	}
	idt, err := v.Verify(t.Context(), raw)
	if err != nil {
		t.Fatalf("verify id_token: %v", err)
	}
	var c claims
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	if idt.Subject != alice.ID || c.Email != alice.Email || !slices.Equal(c.Groups, alice.Groups) {
		t.Errorf("id_token: sub %q email %q groups %q, want %q %q %q", idt.Subject, c.Email, c.Groups, alice.ID, alice.Email, alice.Groups)
	}
	return idt
}

func TestAuthorizationCodeWithPKCE(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	p := oidctest.Start(t, alice)
	provider, cfg, verifier := relyingParty(t, p)

	pkce, state, nonce := oauth2.GenerateVerifier(), rand.Text(), rand.Text()
	authURL := cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(pkce), oidc.Nonce(nonce))
	redirect, err := p.BrowserLogin(authURL, alice.Username, alice.Password)
	if err != nil {
		t.Fatalf("BrowserLogin: %v", err)
	}
	u, err := url.Parse(redirect)
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Scheme + "://" + u.Host + u.Path; got != cfg.RedirectURL {
		t.Errorf("redirected to %s, want %s", got, cfg.RedirectURL)
	}
	if u.Query().Get("state") != state {
		t.Errorf("state %q, want %q", u.Query().Get("state"), state)
	}

	tok, err := cfg.Exchange(ctx, u.Query().Get("code"), oauth2.VerifierOption(pkce))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if idt := verifyIDToken(t, verifier, tok); idt.Nonce != nonce {
		t.Errorf("nonce %q, want %q", idt.Nonce, nonce)
	}

	// The code is single use.
	if _, err := cfg.Exchange(ctx, u.Query().Get("code"), oauth2.VerifierOption(pkce)); err == nil {
		t.Error("second exchange of the same code succeeded")
	}

	// The access token works at the userinfo endpoint.
	info, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	var c claims
	if err := info.Claims(&c); err != nil {
		t.Fatal(err)
	}
	if info.Subject != alice.ID || info.Email != alice.Email || !slices.Equal(c.Groups, alice.Groups) {
		t.Errorf("userinfo: sub %q email %q groups %q", info.Subject, info.Email, c.Groups)
	}

	// offline_access gave a refresh token; redeeming it gives a new ID token.
	refreshed, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	verifyIDToken(t, verifier, refreshed)
}

func TestAuthorizeRequiresPKCES256(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t, alice)
	_, cfg, _ := relyingParty(t, p)
	pkce := oauth2.GenerateVerifier()
	for name, opts := range map[string][]oauth2.AuthCodeOption{
		"no PKCE": nil,
		"plain":   {oauth2.SetAuthURLParam("code_challenge", pkce), oauth2.SetAuthURLParam("code_challenge_method", "plain")},
	} {
		redirect, err := p.BrowserLogin(cfg.AuthCodeURL("state", opts...), alice.Username, alice.Password)
		if err == nil || !strings.Contains(redirect, "error=invalid_request") {
			t.Errorf("%s: BrowserLogin = %q, %v; want an invalid_request redirect", name, redirect, err)
		}
	}
}

func TestBrowserLoginWrongPassword(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t, alice)
	_, cfg, _ := relyingParty(t, p)
	authURL := cfg.AuthCodeURL("state", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	for _, user := range []string{alice.Username, "mallory"} {
		if redirect, err := p.BrowserLogin(authURL, user, "wrong"); err == nil {
			t.Errorf("%s with a wrong password: redirected to %s", user, redirect)
		}
	}
}

func TestDeviceFlowApproved(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	p := oidctest.Start(t, alice)
	_, cfg, verifier := relyingParty(t, p)

	da, err := cfg.DeviceAuth(ctx)
	if err != nil {
		t.Fatalf("device authorization: %v", err)
	}
	if !strings.HasPrefix(da.VerificationURI, p.Issuer+"/") {
		t.Errorf("verification_uri %q is not the provider's", da.VerificationURI)
	}
	if err := p.ApproveDevice(da.UserCode, alice.Username, "wrong"); err == nil {
		t.Error("ApproveDevice with a wrong password succeeded")
	}

	// The person approves while the device polls.
	approved := make(chan error, 1)
	go func() { approved <- p.ApproveDevice(da.UserCode, alice.Username, alice.Password) }()
	tok, err := cfg.DeviceAccessToken(ctx, da)
	if err := <-approved; err != nil {
		t.Fatalf("ApproveDevice: %v", err)
	}
	if err != nil {
		t.Fatalf("polling: %v", err)
	}
	verifyIDToken(t, verifier, tok)

	// The user code is spent.
	if err := p.ApproveDevice(da.UserCode, alice.Username, alice.Password); err == nil {
		t.Error("ApproveDevice succeeded twice for one user code")
	}
}

func TestDeviceFlowDenied(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	p := oidctest.Start(t, alice)
	_, cfg, _ := relyingParty(t, p)

	da, err := cfg.DeviceAuth(ctx)
	if err != nil {
		t.Fatalf("device authorization: %v", err)
	}
	if err := p.DenyDevice(da.UserCode, alice.Username, alice.Password); err != nil {
		t.Fatalf("DenyDevice: %v", err)
	}
	_, err = cfg.DeviceAccessToken(ctx, da)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "access_denied" {
		t.Fatalf("polling after a refusal: %v, want access_denied", err)
	}
}

func TestMintedIDTokens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := oidctest.Start(t) // minting needs no registered user
	_, _, verifier := relyingParty(t, p)

	idt, err := verifier.Verify(ctx, p.IDToken(t, alice, oidctest.Nonce("n-1")))
	if err != nil {
		t.Fatalf("default token refused: %v", err)
	}
	var c claims
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	if idt.Subject != alice.ID || idt.Nonce != "n-1" || c.Email != alice.Email || !slices.Equal(c.Groups, alice.Groups) {
		t.Errorf("default token: sub %q nonce %q email %q groups %q", idt.Subject, idt.Nonce, c.Email, c.Groups)
	}

	for name, opt := range map[string]oidctest.TokenOption{
		"expired":        oidctest.Expired(),
		"other audience": oidctest.Audience(oidctest.OtherClientID),
		"other issuer":   oidctest.Issuer("http://evil.example"),
		"unsigned":       oidctest.Unsigned(),
		"foreign key":    oidctest.ForeignKey(),
	} {
		if _, err := verifier.Verify(ctx, p.IDToken(t, alice, opt)); err == nil {
			t.Errorf("%s: go-oidc accepted the token", name)
		} else {
			t.Logf("%s: refused: %v", name, err)
		}
	}
}
