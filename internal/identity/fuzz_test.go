package identity

import (
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
