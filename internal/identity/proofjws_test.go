package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/go-jose/go-jose/v4"
)

// TestReadProofAgainstGoJose: a proof's reader accepts the proofs Warden's
// clients and go-jose's signer make; whatever it accepts, go-jose accepts
// with the same key and payload; and it refuses what the two could read
// differently.
func TestReadProofAgainstGoJose(t *testing.T) {
	pub, priv := GenerateKey()
	x := base64.RawURLEncoding.EncodeToString(pub)
	jwk := `{"kty":"OKP","crv":"Ed25519","x":"` + x + `"}`
	const payload = `{"jti":"j","htm":"POST","htu":"https://pep.test/x","iat":1800000000}`
	enc := base64.RawURLEncoding.EncodeToString
	// sign makes a compact JWS of the header and payload given, as bytes.
	sign := func(header, body string) string {
		in := enc([]byte(header)) + "." + enc([]byte(body))
		return in + "." + enc(ed25519.Sign(priv, []byte(in)))
	}
	good := sign(`{"alg":"EdDSA","typ":"dpop+jwt","jwk":`+jwk+`}`, payload)
	_, other := GenerateKey()
	cases := []struct {
		name   string
		proof  string
		accept bool
	}{
		{"Warden's own", good, true},
		{"other members, typ in capitals", sign(`{"typ":"DPoP+JWT","alg":"EdDSA","kid":"k","jwk":{"kty":"OKP","crv":"Ed25519","use":"sig","x":"`+x+`"}}`, payload), true},
		{"whitespace in the header", sign(" {\n\"alg\" : \"EdDSA\", \"typ\":\"dpop+jwt\",\"jwk\":"+jwk+"}\t", payload), true},
		{"signed by another key", func() string {
			in := enc([]byte(`{"alg":"EdDSA","typ":"dpop+jwt","jwk":`+jwk+`}`)) + "." + enc([]byte(payload))
			return in + "." + enc(ed25519.Sign(other, []byte(in)))
		}(), false},
		{"payload changed", strings.Replace(good, enc([]byte(payload)), enc([]byte(strings.Replace(payload, `"j"`, `"k"`, 1))), 1), false},
		{"alg none", sign(`{"alg":"none","typ":"dpop+jwt","jwk":`+jwk+`}`, payload), false},
		{"alg in another case", sign(`{"alg":"eddsa","typ":"dpop+jwt","jwk":`+jwk+`}`, payload), false},
		{"typ JWT", sign(`{"alg":"EdDSA","typ":"JWT","jwk":`+jwk+`}`, payload), false},
		{"no typ", sign(`{"alg":"EdDSA","jwk":`+jwk+`}`, payload), false},
		{"no jwk", sign(`{"alg":"EdDSA","typ":"dpop+jwt"}`, payload), false},
		{"jwk named JWK", sign(`{"alg":"EdDSA","typ":"dpop+jwt","JWK":`+jwk+`}`, payload), false},
		{"alg twice", sign(`{"alg":"none","alg":"EdDSA","typ":"dpop+jwt","jwk":`+jwk+`}`, payload), false},
		{"alg and ALG", sign(`{"ALG":"none","alg":"EdDSA","typ":"dpop+jwt","jwk":`+jwk+`}`, payload), false},
		{"jwk twice", sign(`{"alg":"EdDSA","typ":"dpop+jwt","jwk":{"kty":"OKP","crv":"Ed25519","x":"AAAA"},"jwk":`+jwk+`}`, payload), false},
		{"private key in the jwk", sign(`{"alg":"EdDSA","typ":"dpop+jwt","jwk":{"kty":"OKP","crv":"Ed25519","x":"`+x+`","d":"`+enc(priv.Seed())+`"}}`, payload), false},
		{"a low-order key, with the signature it takes for any message", lowOrderForgery(payload), false},
		{"another low-order key, not in canonical form", func() string {
			h := `{"alg":"EdDSA","typ":"dpop+jwt","jwk":{"kty":"OKP","crv":"Ed25519","x":"` + enc(append([]byte{0xee}, bytes.Repeat([]byte{0xff}, 31)...)) + `"}}`
			return enc([]byte(h)) + "." + enc([]byte(payload)) + "." + enc(make([]byte, 64))
		}(), false},
		{"an X25519 key", sign(`{"alg":"EdDSA","typ":"dpop+jwt","jwk":{"kty":"OKP","crv":"X25519","x":"`+x+`"}}`, payload), false},
		{"a short x", sign(`{"alg":"EdDSA","typ":"dpop+jwt","jwk":{"kty":"OKP","crv":"Ed25519","x":"`+x[:40]+`"}}`, payload), false},
		{"x not a string", sign(`{"alg":"EdDSA","typ":"dpop+jwt","jwk":{"kty":"OKP","crv":"Ed25519","x":1}}`, payload), false},
		{"critical extension", sign(`{"alg":"EdDSA","typ":"dpop+jwt","crit":["exp"],"exp":1,"jwk":`+jwk+`}`, payload), false},
		{"unencoded payload", sign(`{"alg":"EdDSA","typ":"dpop+jwt","b64":false,"crit":["b64"],"jwk":`+jwk+`}`, payload), false},
		{"padded header", func() string {
			h := `{"alg":"EdDSA","typ":"dpop+jwt","jwk":` + jwk + `}`
			for len(h)%3 == 0 {
				h += " "
			}
			in := base64.URLEncoding.EncodeToString([]byte(h)) + "." + enc([]byte(payload))
			return in + "." + enc(ed25519.Sign(priv, []byte(in)))
		}(), false},
		{"signature with its unused bits set", func() string {
			last := good[len(good)-1]
			i := strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", last)
			return good[:len(good)-1] + string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[i^1])
		}(), false},
		{"standard base64 alphabet", func() string {
			// A proof with a '-' or '_' to spell otherwise (one of 60 has
			// neither in its key and signature).
			for i := 0; ; i++ {
				p := sign(`{"alg":"EdDSA","typ":"dpop+jwt","jwk":`+jwk+`}`, strings.Replace(payload, `"j"`, fmt.Sprintf(`"j%d"`, i), 1))
				if std := strings.NewReplacer("-", "+", "_", "/").Replace(p); std != p {
					return std
				}
			}
		}(), false},
		{"a line break in the header, signed so", func() string {
			h := enc([]byte(`{"alg":"EdDSA","typ":"dpop+jwt","jwk":` + jwk + `}`))
			in := h[:10] + "\r\n" + h[10:] + "." + enc([]byte(payload))
			return in + "." + enc(ed25519.Sign(priv, []byte(in)))
		}(), false},
		{"four parts", good + ".x", false},
		{"JSON serialization", `{"payload":"` + enc([]byte(payload)) + `","signatures":[]}`, false},
		{"header not an object", sign(`["alg","EdDSA"]`, payload), false},
		{"header null", sign(`null`, payload), false},
		{"empty payload", sign(`{"alg":"EdDSA","typ":"dpop+jwt","jwk":`+jwk+`}`, ""), false},
	}
	// Each case read alone, then all of them through one memo of headers,
	// twice: a header read before (the good proof's, for the proofs signed
	// by another key or with another payload) changes no answer.
	memo := newHeaderMemo(proofHeaderMemo)
	var all []struct {
		name   string
		proof  string
		accept bool
		memo   *headerMemo
	}
	for _, m := range []*headerMemo{nil, memo, memo} {
		for _, c := range cases {
			all = append(all, struct {
				name   string
				proof  string
				accept bool
				memo   *headerMemo
			}{c.name, c.proof, c.accept, m})
		}
	}
	for _, c := range all {
		got, err := readProof(c.proof, "dpop+jwt", c.memo)
		if err == nil {
			c.memo.keep(got)
		}
		if (err == nil) != c.accept {
			t.Errorf("%s (memo %v): accepted %v (%v), want %v", c.name, c.memo != nil, err == nil, err, c.accept)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrAlgorithm) && !errors.Is(err, ErrSignature) {
				t.Errorf("%s: %v wraps none of the token errors", c.name, err)
			}
			continue
		}
		jws, err := jose.ParseSigned(c.proof, []jose.SignatureAlgorithm{jose.EdDSA})
		if err != nil {
			t.Fatalf("%s: go-jose cannot parse what was accepted: %v", c.name, err)
		}
		k := jws.Signatures[0].Protected.JSONWebKey
		if k == nil || !pub.Equal(k.Key) || !got.key.Equal(pub) || got.jkt != Thumbprint(pub) {
			t.Fatalf("%s: the keys differ: %v and %v", c.name, got.key, k)
		}
		body, err := jws.Verify(got.key)
		if err != nil || string(body) != string(got.payload) {
			t.Fatalf("%s: go-jose verifies %q (%v), the reader gave %q", c.name, body, err, got.payload)
		}
	}
}

// lowOrderForgery is a proof "signed" by the identity point as its key:
// R the identity's encoding, S zero. [S]B = R + [k]A holds for any message
// when A and R are the identity, so Go's ed25519.Verify accepts it.
func lowOrderForgery(payload string) string {
	identity := append([]byte{1}, make([]byte, 31)...)
	enc := base64.RawURLEncoding.EncodeToString
	h := `{"alg":"EdDSA","typ":"dpop+jwt","jwk":{"kty":"OKP","crv":"Ed25519","x":"` + enc(identity) + `"}}`
	in := enc([]byte(h)) + "." + enc([]byte(payload))
	return in + "." + enc(append(identity, make([]byte, 32)...))
}

// TestLowOrderForgeryVerifies: the forgery above is one: without the
// reader's check, Go's verifier accepts it (so the test case refusing it
// proves the check).
func TestLowOrderForgeryVerifies(t *testing.T) {
	p := lowOrderForgery(`{"jti":"x"}`)
	parts := strings.Split(p, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	key := append([]byte{1}, make([]byte, 31)...)
	if !ed25519.Verify(key, []byte(parts[0]+"."+parts[1]), sig) {
		t.Fatal("Go's verifier refuses the low-order forgery: the refusal test proves nothing")
	}
}

func TestHeaderMemo(t *testing.T) {
	pub, priv := GenerateKey()
	enc := base64.RawURLEncoding.EncodeToString
	header := func(typ string) string {
		return enc([]byte(`{"alg":"EdDSA","typ":"` + typ + `","jwk":{"kty":"OKP","crv":"Ed25519","x":"` + enc(pub) + `"}}`))
	}
	sign := func(h string) string {
		in := h + "." + enc([]byte(`{}`))
		return in + "." + enc(ed25519.Sign(priv, []byte(in)))
	}
	m := newHeaderMemo(2)
	// read is a proof's reading by a verifier: its header kept once the
	// proof is accepted.
	read := func(proof, typ string) error {
		p, err := readProof(proof, typ, m)
		if err == nil {
			m.keep(p)
		}
		return err
	}
	if err := read(sign(header("dpop+jwt")), "dpop+jwt"); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.get(header("dpop+jwt"), "dpop+jwt"); !ok {
		t.Fatal("a header read without fault is not kept")
	}
	// Kept for one type, the header is read again for another.
	if err := read(sign(header("dpop+jwt")), "jwt"); err == nil {
		t.Fatal("a header kept as a dpop+jwt's was taken for another type")
	}
	if err := read(sign(header("JWT")), "dpop+jwt"); err == nil {
		t.Fatal("a typ JWT header was accepted")
	}
	if _, ok := m.get(header("JWT"), "dpop+jwt"); ok {
		t.Fatal("a header refused was kept")
	}
	for _, typ := range []string{"DPoP+JWT", "DPOP+JWT", "dPoP+jwt"} {
		if err := read(sign(header(typ)), "dpop+jwt"); err != nil {
			t.Fatal(err)
		}
		if len(m.m) > 2 {
			t.Fatalf("the memo holds %d headers, more than its 2", len(m.m))
		}
	}
	long := enc([]byte(`{"alg":"EdDSA","typ":"dpop+jwt","kid":"` + strings.Repeat("k", maxMemoHeader) + `","jwk":{"kty":"OKP","crv":"Ed25519","x":"` + enc(pub) + `"}}`))
	if err := read(sign(long), "dpop+jwt"); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.get(long, "dpop+jwt"); ok {
		t.Fatal("a header longer than the memo's limit was kept")
	}
}

// A verifier keeps the header of an accepted proof only, and a copy of it,
// not the proof: proofs refused (signed by a key other than the token's,
// say) take no room, and a kept header holds no proof of 8 KB in memory.
func TestVerifierKeepsAcceptedHeadersOnly(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	_, priv := GenerateKey()
	bound, _ := GenerateKey() // the key the token is bound to
	_, other := GenerateKey()
	d := NewDPoPVerifier(DPoPConfig{Now: func() time.Time { return now }})
	const url = "https://pep.test/x"
	for i := range 20 {
		p := proof(t, other, "POST", url, "", now, fmt.Sprint("wrong-", i))
		if _, err := d.Verify(p, DPoPCheck{Method: "POST", URL: url, JKT: Thumbprint(bound)}); err == nil {
			t.Fatal("a proof by another key than the token's was accepted")
		}
	}
	if n := len(d.headers.m); n != 0 {
		t.Fatalf("refused proofs left %d headers in the memo", n)
	}
	p := proof(t, priv, "POST", url, "", now, "good")
	if _, err := d.Verify(p, DPoPCheck{Method: "POST", URL: url}); err != nil {
		t.Fatal(err)
	}
	if n := len(d.headers.m); n != 1 {
		t.Fatalf("an accepted proof left %d headers in the memo, want 1", n)
	}
	h, _, _ := strings.Cut(p, ".")
	for k := range d.headers.m {
		if k != h {
			t.Fatalf("kept %q, want %q", k, h)
		}
		if unsafe.StringData(k) == unsafe.StringData(p) {
			t.Fatal("the memo keeps the proof the header was part of")
		}
	}
}
