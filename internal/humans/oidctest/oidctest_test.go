package oidctest_test

import (
	"slices"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/warden-run/warden/internal/humans/oidctest"
)

var alice = oidctest.User{
	ID:       "u-alice",
	Username: "alice",
	Password: "correct horse battery staple",
	Email:    "alice@example.com",
	Groups:   []string{"sre", "warden-admins"},
}

// verifier discovers the provider the way production code does and returns
// the CLI client's ID token verifier.
func verifier(t *testing.T, p *oidctest.Provider) *oidc.IDTokenVerifier {
	t.Helper()
	provider, err := oidc.NewProvider(t.Context(), p.Issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	return provider.Verifier(&oidc.Config{ClientID: oidctest.ClientID})
}

type claims struct {
	Email  string   `json:"email"`
	Groups []string `json:"groups"`
}

func TestMintedIDTokens(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	p := oidctest.Start(t) // minting needs no registered user
	verifier := verifier(t, p)

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

func TestStartStopsAtCleanup(t *testing.T) {
	t.Parallel()
	var issuer string
	t.Run("provider", func(t *testing.T) {
		p := oidctest.Start(t, alice)
		issuer = p.Issuer
		if _, err := oidc.NewProvider(t.Context(), issuer); err != nil {
			t.Fatalf("discovery: %v", err)
		}
	})
	if _, err := oidc.NewProvider(t.Context(), issuer); err == nil {
		t.Error("the provider still answers after its test ended")
	}
}
