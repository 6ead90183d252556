package identity

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/warden-run/warden/internal/store/sqlite"
)

func jwksKIDs(t *testing.T, b []byte) []string {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Fatal("the JWKS holds a private key")
		}
		out = append(out, k.KeyID)
	}
	return out
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://dev/a", []string{"r"}, nil)
	first, _ := e.keys.current()
	old := e.token(a)
	kid, err := e.keys.Rotate(e.ctx, "admin:test", false)
	if err != nil {
		t.Fatal(err)
	}
	if kid == first.kid {
		t.Fatal("rotation kept the key")
	}
	// The new key is published at once, the old one stays.
	if kids := jwksKIDs(t, e.keys.JWKS()); len(kids) != 2 || kids[0] != kid || kids[1] != first.kid {
		t.Fatalf("JWKS after rotation: %v", kids)
	}
	if _, err := e.ver.Verify(e.ctx, old.AccessToken); err != nil {
		t.Fatalf("a token signed by the old key: %v", err)
	}
	fresh := e.token(a)
	if !strings.Contains(headerOf(t, fresh.AccessToken), kid) {
		t.Fatal("new tokens are not signed by the new key")
	}
	// After the longest token lifetime the old key leaves the JWKS and is pruned.
	e.clock.Advance(MaxTokenLifetime + 31*time.Second)
	if kids := jwksKIDs(t, e.keys.JWKS()); len(kids) != 1 || kids[0] != kid {
		t.Fatalf("JWKS after the old key retired: %v", kids)
	}
	if err := e.keys.Prune(e.ctx); err != nil {
		t.Fatal(err)
	}
	if ks := e.keys.Keys(); len(ks) != 1 || !ks[0].Active {
		t.Fatalf("after prune: %+v", ks)
	}
}

func TestKeyRotationRetiringNow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://dev/a", []string{"r"}, nil)
	first, _ := e.keys.current()
	old := e.token(a)
	// A replica whose clock runs behind: it still refuses the old key,
	// learning of the rotation through the change feed alone.
	behind := &clock{t: e.clock.Now().Add(-20 * time.Second)}
	view, err := OpenTrustView(e.ctx, TrustViewConfig{MaxStaleness: 5 * time.Second, Now: behind.Now}, e.st)
	if err != nil {
		t.Fatal(err)
	}
	ver, _ := NewVerifier(VerifierConfig{Issuer: testIssuer, Audiences: []string{"warden"}, TrustDomains: testDomains,
		ClockSkew: 30 * time.Second, Now: behind.Now}, view)
	if _, err := ver.Verify(e.ctx, old.AccessToken); err != nil {
		t.Fatalf("before the rotation: %v", err)
	}
	kid, err := e.keys.Rotate(e.ctx, "admin:test", true)
	if err != nil {
		t.Fatal(err)
	}
	if kids := jwksKIDs(t, e.keys.JWKS()); len(kids) != 1 || kids[0] != kid {
		t.Fatalf("JWKS after retiring %s now: %v", first.kid, kids)
	}
	waitUntil(t, func() bool {
		_, err := ver.Verify(e.ctx, old.AccessToken)
		return errors.Is(err, ErrUnknownKey)
	})
	// The new key reaches the verifier's view through the change feed too.
	fresh := e.token(a).AccessToken
	waitUntil(t, func() bool {
		_, err := e.ver.Verify(e.ctx, fresh)
		return err == nil
	})
}

func headerOf(t *testing.T, tok string) string {
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestKeyringRefusesAnotherMasterKey(t *testing.T) {
	t.Parallel()
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "w.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Stop the keyrings' goroutines before the store closes under them.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mk1, _ := NewMasterKey(make([]byte, 32))
	other := make([]byte, 32)
	other[0] = 1
	mk2, _ := NewMasterKey(other)
	if err := BindMasterKey(ctx, st, mk1); err != nil {
		t.Fatal(err)
	}
	kr, err := OpenKeyring(ctx, KeyringConfig{RetireAfter: time.Minute}, st, mk1)
	if err != nil {
		t.Fatal(err)
	}
	if err := BindMasterKey(ctx, st, mk2); err == nil || !strings.Contains(err.Error(), "another master key") {
		t.Fatalf("a second master key was accepted: %v", err)
	}
	if _, err := OpenKeyring(ctx, KeyringConfig{RetireAfter: time.Minute}, st, mk2); err == nil {
		t.Fatal("signing keys decrypted with the wrong master key")
	}
	keys, _ := st.SigningKeys(ctx)
	signer, _ := kr.current()
	if bytes.Contains(keys[0].Sealed, signer.priv.Seed()) {
		t.Fatal("the private key is stored in the clear")
	}
}

func TestMasterKeyFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sub", "master.key")
	mk, created, err := LoadOrCreateMasterKey(path)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	if mode := fileMode(t, path); mode != 0o600 {
		t.Fatalf("mode %04o", mode)
	}
	again, created, err := LoadOrCreateMasterKey(path)
	if err != nil || created || again.id != mk.id {
		t.Fatalf("reload: %v %v", created, err)
	}
	sealed := mk.Seal([]byte("secret"), "label")
	if p, err := again.Open(sealed, "label"); err != nil || string(p) != "secret" {
		t.Fatalf("open: %q %v", p, err)
	}
	if _, err := again.Open(sealed, "other-label"); err == nil {
		t.Fatal("a sealed value opened under another label")
	}
	chmod(t, path, 0o644)
	if _, _, err := LoadOrCreateMasterKey(path); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("a world-readable master key was accepted: %v", err)
	}
}

func TestThumbprintMatchesGoJose(t *testing.T) {
	t.Parallel()
	for range 20 {
		pub, _ := GenerateKey()
		want, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if got := Thumbprint(pub); got != base64.RawURLEncoding.EncodeToString(want) {
			t.Fatalf("Thumbprint %s, go-jose %x", got, want)
		}
	}
	// RFC 8037 appendix A.3: the thumbprint of the example Ed25519 key.
	x, _ := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	if got := Thumbprint(x); got != "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k" {
		t.Fatalf("RFC 8037 example: %s", got)
	}
}

func TestParsePublicJWK(t *testing.T) {
	t.Parallel()
	pub, priv := GenerateKey()
	if got, err := ParsePublicJWK(PublicJWK(pub)); err != nil || !got.Equal(pub) {
		t.Fatalf("round trip: %v", err)
	}
	cases := map[string]string{
		"private key":    string(PrivateJWK(priv)),
		"not json":       "{",
		"RSA-shaped":     `{"kty":"RSA","n":"AQAB","e":"AQAB"}`,
		"X25519":         `{"kty":"OKP","crv":"X25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`,
		"short x":        `{"kty":"OKP","crv":"Ed25519","x":"AAAA"}`,
		"wrong alg":      `{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","alg":"ES256"}`,
		"encryption use": `{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","use":"enc"}`,
	}
	for name, in := range cases {
		if _, err := ParsePublicJWK([]byte(in)); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%s: %v, want ErrInvalidKey", name, err)
		}
	}
	if _, err := ParsePublicJWK(PrivateJWK(priv)); err == nil || !strings.Contains(err.Error(), "private key") {
		t.Fatalf("the private key refusal does not say why: %v", err)
	}
}
