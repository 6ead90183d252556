package identity

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func TestDPoPVerifier(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	clk := &clock{t: now}
	pub, priv := GenerateKey()
	jkt := Thumbprint(pub)
	const url = "https://pep.test/v1/call"
	const token = "access-token"

	// signWith makes a proof with full control of header and claims.
	signWith := func(key ed25519.PrivateKey, embed bool, typ string, claims map[string]any) string {
		opts := &jose.SignerOptions{EmbedJWK: embed}
		if typ != "" {
			opts = opts.WithType(jose.ContentType(typ))
		}
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: key}, opts)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.Signed(s).Claims(claims).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	claims := func(jti string, edit func(map[string]any)) map[string]any {
		c := map[string]any{"jti": jti, "htm": "POST", "htu": url, "iat": now.Unix(), "ath": AccessTokenHash(token)}
		if edit != nil {
			edit(c)
		}
		return c
	}
	check := DPoPCheck{Method: "POST", URL: url, AccessToken: token, JKT: jkt}

	cases := []struct {
		name  string
		proof string
		check DPoPCheck
		want  error // nil: accepted
	}{
		{"valid", signWith(priv, true, "dpop+jwt", claims("ok-1", nil)), check, nil},
		{"htu with query, default port and upper-case host", signWith(priv, true, "dpop+jwt", claims("ok-2", func(c map[string]any) {
			c["htu"] = "https://PEP.test:443/v1/call"
		})), DPoPCheck{Method: "POST", URL: url + "?x=1#f", AccessToken: token, JKT: jkt}, nil},
		{"no token to bind", signWith(priv, true, "dpop+jwt", claims("ok-3", func(c map[string]any) { delete(c, "ath") })),
			DPoPCheck{Method: "POST", URL: url}, nil},
		{"wrong typ", signWith(priv, true, "JWT", claims("t", nil)), check, ErrDPoP},
		{"no embedded jwk", signWith(priv, false, "dpop+jwt", claims("j", nil)), check, ErrDPoP},
		{"key not cnf.jkt", signWith(func() ed25519.PrivateKey { _, k := GenerateKey(); return k }(), true, "dpop+jwt", claims("k", nil)), check, ErrDPoPKeyMismatch},
		{"htm mismatch", signWith(priv, true, "dpop+jwt", claims("m", func(c map[string]any) { c["htm"] = "GET" })), check, ErrDPoP},
		{"htm case differs", signWith(priv, true, "dpop+jwt", claims("m2", func(c map[string]any) { c["htm"] = "post" })), check, ErrDPoP},
		{"htu other path", signWith(priv, true, "dpop+jwt", claims("u", func(c map[string]any) { c["htu"] = "https://pep.test/v1/other" })), check, ErrDPoP},
		{"htu other scheme", signWith(priv, true, "dpop+jwt", claims("u2", func(c map[string]any) { c["htu"] = "http://pep.test/v1/call" })), check, ErrDPoP},
		{"htu relative", signWith(priv, true, "dpop+jwt", claims("u3", func(c map[string]any) { c["htu"] = "/v1/call" })), check, ErrDPoP},
		{"iat too old", signWith(priv, true, "dpop+jwt", claims("i", func(c map[string]any) { c["iat"] = now.Add(-61 * time.Second).Unix() })), check, ErrExpired},
		{"iat in the future", signWith(priv, true, "dpop+jwt", claims("i2", func(c map[string]any) { c["iat"] = now.Add(time.Minute).Unix() })), check, ErrNotYetValid},
		{"iat missing", signWith(priv, true, "dpop+jwt", claims("i3", func(c map[string]any) { delete(c, "iat") })), check, ErrDPoP},
		{"ath of another token", signWith(priv, true, "dpop+jwt", claims("a", func(c map[string]any) { c["ath"] = AccessTokenHash("other") })), check, ErrDPoP},
		{"ath missing", signWith(priv, true, "dpop+jwt", claims("a2", func(c map[string]any) { delete(c, "ath") })), check, ErrDPoP},
		{"jti missing", signWith(priv, true, "dpop+jwt", claims("", nil)), check, ErrDPoP},
		{"HS256", hs256(t, pub, claims("h", nil), map[jose.HeaderKey]any{"typ": "dpop+jwt"}), check, ErrAlgorithm},
		{"garbage", "a.b.c", check, ErrDPoP},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			d := NewDPoPVerifier(DPoPConfig{Now: clk.Now})
			_, err := d.Verify(c.proof, c.check)
			if c.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if _, err := d.Verify(c.proof, c.check); !errors.Is(err, ErrReplay) {
					t.Fatalf("second use: %v, want ErrReplay", err)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if d.replay.Len() != 0 {
				t.Fatal("a refused proof was recorded")
			}
		})
	}
}

func TestReplayCacheBounded(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	c := NewReplayCache(3, 3)
	for i := range 3 {
		if err := c.Use(fmt.Sprint(i), now.Add(time.Minute), now); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Use("3", now.Add(time.Minute), now); !errors.Is(err, ErrReplayCacheIsFull) {
		t.Fatalf("full cache: %v, want ErrReplayCacheIsFull", err)
	}
	if err := c.Use("1", now.Add(time.Minute), now); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay: %v", err)
	}
	// Once the values expire they make room, and may not be confused with replays.
	later := now.Add(2 * time.Minute)
	if err := c.Use("3", later.Add(time.Minute), later); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if err := c.Use("1", later.Add(time.Minute), later); err != nil {
		t.Fatalf("an expired value reused after its proof could no longer be valid: %v", err)
	}
	if c.Len() != 2 {
		t.Fatalf("len %d", c.Len())
	}
	// One owner filling its share leaves room for the others.
	o := NewReplayCache(10, 2)
	for i := range 2 {
		if err := o.UseFor("greedy", fmt.Sprint(i), now.Add(time.Minute), now); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.UseFor("greedy", "2", now.Add(time.Minute), now); !errors.Is(err, ErrReplayCacheIsFull) {
		t.Fatalf("over the owner's share: %v", err)
	}
	if err := o.UseFor("other", "0", now.Add(time.Minute), now); err != nil {
		t.Fatalf("another owner: %v", err)
	}
	// The same value under two owners is two values.
	if err := o.UseFor("other", "1", now.Add(time.Minute), now); err != nil {
		t.Fatal(err)
	}
	if err := o.UseFor("greedy", "1", now.Add(time.Minute), now); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay under its owner: %v", err)
	}
}
