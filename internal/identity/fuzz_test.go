package identity

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// FuzzVerify feeds arbitrary strings to the token verifier. Whatever it
// accepts must carry a valid issuer signature over the claims it returns.
func FuzzVerify(f *testing.F) {
	e := newEnv(f)
	a := e.register("ai-agent://dev/fuzz", []string{"r"}, nil)
	valid := e.token(a).AccessToken
	f.Add(valid)
	f.Add(algNoneF(valid))
	f.Add("")
	f.Add("a.b.c")
	f.Add(strings.Replace(valid, ".", "..", 1))
	f.Fuzz(func(t *testing.T, raw string) {
		tok, err := e.ver.Verify(e.ctx, raw)
		if err != nil {
			return
		}
		k, _ := e.keys.current()
		parsed, perr := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.EdDSA})
		if perr != nil {
			t.Fatalf("accepted a token go-jose cannot parse: %v", perr)
		}
		var c Claims
		if err := parsed.Claims(k.priv.Public(), &c); err != nil {
			t.Fatalf("accepted a token whose signature does not verify: %v", err)
		}
		if c.Subject != tok.Subject || c.ID != tok.ID {
			t.Fatal("accepted claims differ from the signed ones")
		}
	})
}

func algNoneF(signed string) string {
	parts := strings.Split(signed, ".")
	return "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0." + parts[1] + "."
}

// FuzzDPoPProof feeds arbitrary proofs to the DPoP verifier: it must never
// panic, and whatever it accepts must be signed by the key it reports.
func FuzzDPoPProof(f *testing.F) {
	_, priv := GenerateKey()
	now := time.Unix(1_800_000_000, 0)
	clk := &clock{t: now}
	f.Add(proof(f, priv, "POST", "https://pep.test/x", "tok", now, "seed-1"))
	f.Add("a.b.c")
	f.Add("")
	memo := newHeaderMemo(64)
	f.Fuzz(func(t *testing.T, p string) {
		// A memo of headers shared by every input changes no answer.
		alone, err1 := readProof(p, "dpop+jwt", nil)
		shared, err2 := readProof(p, "dpop+jwt", memo)
		if err2 == nil {
			memo.keep(shared)
		}
		if (err1 == nil) != (err2 == nil) || err1 == nil && (!alone.key.Equal(shared.key) || alone.jkt != shared.jkt) {
			t.Fatalf("read alone %v (%v), with the memo %v (%v)", alone, err1, shared, err2)
		}
		d := NewDPoPVerifier(DPoPConfig{Now: clk.Now})
		got, err := d.Verify(p, DPoPCheck{Method: "POST", URL: "https://pep.test/x", AccessToken: "tok"})
		if err != nil {
			return
		}
		jws, err := jose.ParseSigned(p, []jose.SignatureAlgorithm{jose.EdDSA})
		if err != nil {
			t.Fatalf("accepted an unparseable proof: %v", err)
		}
		if _, err := jws.Verify(got.Key); err != nil {
			t.Fatalf("accepted a proof not signed by its key: %v", err)
		}
		if Thumbprint(got.Key) != got.JKT {
			t.Fatal("reported thumbprint is not the key's")
		}
	})
}

// FuzzClientAssertion feeds arbitrary assertions to the token endpoint: it
// must never panic and never issue a token for one it did not get from the agent.
func FuzzClientAssertion(f *testing.F) {
	e := newEnv(f)
	a := e.register("ai-agent://dev/fuzz", []string{"r"}, nil)
	seeds := make(map[string]bool)
	for range 3 {
		s := e.assertion(a, assertionOpts{})
		seeds[s] = true
		f.Add(s)
	}
	f.Add("")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Fuzz(func(t *testing.T, s string) {
		_, err := e.issuer.Issue(e.ctx, ccReq(s))
		if err == nil && !seeds[s] {
			t.Fatalf("issued a token for an assertion the agent never signed: %q", s)
		}
	})
}

// A proof's claims are read in one pass as json.Decoder reads them.
func FuzzDPoPClaims(f *testing.F) {
	for _, c := range []string{
		`{"jti":"j","htm":"POST","htu":"https://pep.test/x","iat":1800000000,"ath":"a"}`,
		`{"jti":"j","iat":-1.5e3,"nonce":{"n":[1]}} `,
		`{"JTI":"j","jti":"k"}`, `{"iat":"1800000000"}`, `{"jti":"a"}{"jti":"b"}`, `null`, `[]`, `{"htu":"\u0068ttps://x"}`,
	} {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := readClaims(b)
		var want dpopClaims
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		werr := dec.Decode(&want)
		if (err == nil) != (werr == nil) || err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: read %+v (%v), json.Decoder %+v (%v)", b, got, err, want, werr)
		}
	})
}

// Claims as clients write them are read in one pass.
func TestDPoPClaimsScanned(t *testing.T) {
	for _, c := range []string{
		`{"jti":"j","htm":"POST","htu":"https://pep.test/x","iat":1800000000,"ath":"a"}`,
		`{"htu":"https://pep.test/x","iat":1800000000,"jti":"j","htm":"GET","nonce":"n"}`,
	} {
		if _, err := scanClaims([]byte(c)); err != nil {
			t.Errorf("%s: %v", c, err)
		}
	}
	for _, c := range []string{`{"JTI":"j"}`, `{"jti":"a","jti":"b"}`, `{"iat":"1"}`, `{"jti":"a"} x`} {
		if _, err := scanClaims([]byte(c)); err == nil {
			t.Errorf("%s: scanned", c)
		}
	}
}
