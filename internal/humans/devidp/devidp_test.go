package devidp_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/warden-run/warden/internal/humans/devidp"
)

var alice = devidp.User{
	ID:       "u-alice",
	Username: "alice",
	Password: "correct horse battery staple",
	Email:    "alice@example.com",
	Groups:   []string{"sre", "warden-admins"},
}

var scopes = []string{oidc.ScopeOpenID, "email", "profile", "groups", oidc.ScopeOfflineAccess}

// start starts a provider that stops when the test ends.
func start(t *testing.T, users ...devidp.User) *devidp.Provider {
	t.Helper()
	p, err := devidp.Start(users...)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

// relyingParty discovers the provider the way production code does and
// returns the OAuth2 config of the CLI client and its ID token verifier.
func relyingParty(t *testing.T, p *devidp.Provider) (*oidc.Provider, oauth2.Config, *oidc.IDTokenVerifier) {
	t.Helper()
	provider, err := oidc.NewProvider(t.Context(), p.Issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	cfg := oauth2.Config{
		ClientID:    devidp.ClientID,
		Endpoint:    provider.Endpoint(),
		RedirectURL: "http://127.0.0.1:49152/callback", // nothing listens: BrowserLogin does not follow it
		Scopes:      scopes,
	}
	return provider, cfg, provider.Verifier(&oidc.Config{ClientID: devidp.ClientID})
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
	p := start(t, alice)
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
	p := start(t, alice)
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
	p := start(t, alice)
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
	p := start(t, alice)
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
	p := start(t, alice)
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

func TestSigningKeyIsInJWKS(t *testing.T) {
	t.Parallel()
	p := start(t)
	provider, _, _ := relyingParty(t, p)
	var discovery struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := provider.Claims(&discovery); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(discovery.JWKSURI)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var jwks jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&jwks); err != nil {
		t.Fatal(err)
	}
	kid, key := p.SigningKey()
	keys := jwks.Key(kid)
	if len(keys) != 1 {
		t.Fatalf("JWKS has %d keys with kid %q, want 1: %+v", len(keys), kid, jwks)
	}
	if pub, ok := keys[0].Key.(*rsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		t.Errorf("JWKS key %q is %T %v, not SigningKey's public key", kid, keys[0].Key, keys[0].Key)
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	p, err := devidp.Start(alice)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := oidc.NewProvider(t.Context(), p.Issuer); err != nil {
		t.Fatalf("discovery before Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := oidc.NewProvider(t.Context(), p.Issuer); err == nil {
		t.Error("discovery succeeded after Close")
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// lockedBuffer is a log destination that provider goroutines write to while
// the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) take() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer b.buf.Reset()
	return b.buf.String()
}

// TestQuietHandler changes slog.Default, so it must not run in parallel.
func TestQuietHandler(t *testing.T) {
	oldLogger, oldWriter, oldFlags := slog.Default(), log.Writer(), log.Flags()
	t.Cleanup(func() {
		slog.SetDefault(oldLogger) // does not undo log.SetOutput when oldLogger is slog's own
		log.SetOutput(oldWriter)
		log.SetFlags(oldFlags)
	})
	var out lockedBuffer
	text := slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})

	p := start(t, alice)
	_, cfg, _ := relyingParty(t, p)
	// What makes op log: an authorize request without PKCE (WARN) and a device
	// polling before anyone answered (INFO).
	provoke := func() {
		t.Helper()
		if _, err := p.BrowserLogin(cfg.AuthCodeURL("state"), alice.Username, alice.Password); err == nil {
			t.Fatal("BrowserLogin without PKCE succeeded")
		}
		da, err := cfg.DeviceAuth(t.Context())
		if err != nil {
			t.Fatalf("device authorization: %v", err)
		}
		resp, err := http.PostForm(cfg.Endpoint.TokenURL, url.Values{
			"grant_type":  {"urn:ietf:params:oauth:grant-type:device_code"},
			"device_code": {da.DeviceCode},
			"client_id":   {devidp.ClientID},
		})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "authorization_pending") {
			t.Fatalf("poll answered %s %s, want authorization_pending", resp.Status, body)
		}
	}

	// Without QuietHandler, op logs both (which is what makes the check below mean something).
	slog.SetDefault(slog.New(text))
	provoke()
	if got := out.take(); !strings.Contains(got, "level=WARN") || !strings.Contains(got, "authorization_pending") {
		t.Fatalf("op logged\n%s\nwant a WARN record and an authorization_pending record", got)
	}

	slog.SetDefault(slog.New(devidp.QuietHandler(text)))
	provoke()
	slog.Warn("outside the provider", "n", 1)
	slog.Default().With("a", "b").WithGroup("g").Info("derived logger", "n", 2)
	got := out.take()
	if want := "level=WARN msg=\"outside the provider\" n=1\n"; !strings.HasSuffix(strings.SplitAfter(got, "\n")[0], want) {
		t.Errorf("with QuietHandler, first record is %q, want one ending in %q", got, want)
	}
	if !strings.Contains(got, `msg="derived logger" a=b g.n=2`) {
		t.Errorf("with QuietHandler, the derived logger's record is missing:\n%s", got)
	}
	if n := strings.Count(got, "\n"); n != 2 {
		t.Errorf("with QuietHandler, %d records were logged, want 2:\n%s", n, got)
	}
}
