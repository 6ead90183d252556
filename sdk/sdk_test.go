package sdk_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/sdk"
)

func registered(t *testing.T, w *apptest.Instance, id string, roles []string, attrs map[string]string) *sdk.Key {
	t.Helper()
	k := sdk.GenerateKey()
	if _, err := w.App.Registry.Register(t.Context(), "admin:test", identity.Registration{ID: id, Roles: roles, Owner: "o",
		Attributes: attrs, PublicKey: k.PublicJWK()}); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestTokenIsCachedSharedAndRefreshed(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	const id = "ai-agent://dev/sdk"
	c, err := sdk.NewClient(w.URL, id, registered(t, w, id, []string{"r"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	// Concurrent callers share one fetch.
	var wg sync.WaitGroup
	toks := make([]*sdk.Token, 20)
	for i := range toks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := c.Token(t.Context())
			if err != nil {
				t.Error(err)
				return
			}
			toks[i] = tok
		}()
	}
	wg.Wait()
	for _, tok := range toks {
		if tok == nil || tok.AccessToken != toks[0].AccessToken {
			t.Fatal("concurrent callers got different tokens: more than one fetch")
		}
	}
	if _, err := w.App.Verifier.Verify(t.Context(), toks[0].AccessToken); err != nil {
		t.Fatal(err)
	}
	// Near its expiry the token is replaced.
	sdk.ExpireTokenSoon(c)
	next, err := c.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if next.AccessToken == toks[0].AccessToken {
		t.Fatal("a token about to expire was handed out again")
	}
	if strings.Contains(next.String(), next.AccessToken) {
		t.Fatal("Token.String shows the token")
	}
}

func TestTransportAuthenticatesRequestsWithDPoP(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	const id = "ai-agent://prod/caller" // prod requires DPoP
	c, err := sdk.NewClient(w.URL, id, registered(t, w, id, []string{"r"}, nil), sdk.WithDPoP())
	if err != nil {
		t.Fatal(err)
	}
	// A resource server that checks every request the way an enforcement point will.
	var seen []string
	var mu sync.Mutex
	rs := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		_, err := w.App.Verifier.VerifyRequest(r.Context(), identity.Request{Token: tok, DPoP: r.Header.Get("DPoP"),
			Method: r.Method, URL: "http://" + r.Host + r.URL.Path})
		mu.Lock()
		seen = append(seen, scheme)
		mu.Unlock()
		if err != nil {
			http.Error(rw, err.Error(), http.StatusUnauthorized)
			return
		}
		rw.WriteHeader(http.StatusNoContent)
	}))
	defer rs.Close()
	hc := &http.Client{Transport: c.Transport(nil)}
	for i := range 3 {
		resp, err := hc.Get(rs.URL + "/tools?call=" + string(rune('a'+i)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("request %d: HTTP %d", i, resp.StatusCode)
		}
	}
	if len(seen) != 3 || seen[0] != "DPoP" {
		t.Fatalf("schemes %v", seen)
	}
}

func TestExchangeThroughTheSDK(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	const a, b = "ai-agent://dev/planner", "ai-agent://dev/tool"
	ca, _ := sdk.NewClient(w.URL, a, registered(t, w, a, []string{"reader", "writer"}, map[string]string{identity.AttrDelegateTo: b}))
	cb, _ := sdk.NewClient(w.URL, b, registered(t, w, b, []string{"reader"}, nil))
	at, err := ca.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// A hands its token to B, for B to use on A's behalf.
	d, err := ca.Delegate(t.Context(), at.AccessToken, b)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := w.App.Verifier.Verify(t.Context(), d.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Subject != a || tok.Presenter.String() != b || d.Scope != "reader" {
		t.Fatalf("delegated token: sub %s presenter %s scope %q", tok.Subject, tok.Presenter, d.Scope)
	}
	// B's record does not let it delegate to A; nor can B take A's token for itself.
	bt, _ := cb.Token(t.Context())
	for _, try := range []func() error{
		func() error { _, err := cb.Delegate(t.Context(), bt.AccessToken, a); return err },
		func() error { _, err := cb.Delegate(t.Context(), at.AccessToken, b); return err },
	} {
		var oe *sdk.Error
		if err := try(); !errors.As(err, &oe) || oe.Code != "invalid_grant" {
			t.Fatalf("delegation without permission: %v", err)
		}
	}
}

func TestKeyFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k := sdk.GenerateKey()
	priv := filepath.Join(dir, "agent.jwk")
	pub, err := k.WriteFiles(priv)
	if err != nil {
		t.Fatal(err)
	}
	if pub != filepath.Join(dir, "agent.pub.jwk") {
		t.Fatalf("public key path %s", pub)
	}
	if _, err := k.WriteFiles(priv); err == nil {
		t.Fatal("WriteFiles overwrote a key")
	}
	loaded, err := sdk.LoadKey(priv)
	if err != nil || loaded.Thumbprint() != k.Thumbprint() {
		t.Fatalf("LoadKey: %v", err)
	}
	pubJWK, _ := os.ReadFile(pub)
	if _, err := identity.ParsePublicJWK(pubJWK); err != nil {
		t.Fatalf("public file: %v", err)
	}
	if _, err := sdk.LoadKey(pub); err == nil || !strings.Contains(err.Error(), "holds a public key") {
		t.Fatalf("a public key given as the private one: %v", err)
	}
	os.Chmod(priv, 0o644)
	if _, err := sdk.LoadKey(priv); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("a world-readable key: %v", err)
	}
}

func TestNewClientRefusesBadInput(t *testing.T) {
	t.Parallel()
	k := sdk.GenerateKey()
	if _, err := sdk.NewClient("http://127.0.0.1:1", "ai-agent://dev/Bad", k); !errors.Is(err, identity.ErrInvalidAgentID) {
		t.Fatalf("bad agent id: %v", err)
	}
	if _, err := sdk.NewClient("ftp://x", "ai-agent://dev/a", k); err == nil {
		t.Fatal("ftp server URL accepted")
	}
	if _, err := sdk.NewClient("http://127.0.0.1:1", "ai-agent://dev/a", nil); err == nil {
		t.Fatal("nil key accepted")
	}
	c, _ := sdk.NewClient("http://127.0.0.1:1", "ai-agent://dev/a", k)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := c.Token(ctx); err == nil {
		t.Fatal("a token from nowhere")
	}
}

func TestTransportKeepsCredentialsOnTheirOrigin(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	const id = "ai-agent://dev/redirected"
	c, _ := sdk.NewClient(w.URL, id, registered(t, w, id, []string{"r"}, nil))
	var leaked atomic.Bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" || r.Header.Get("DPoP") != "" {
			leaked.Store(true)
		}
	}))
	defer elsewhere.Close()
	// home -> elsewhere/x -> elsewhere/y: no hop after the first may see credentials.
	elsewhere.Config.Handler = http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" || r.Header.Get("DPoP") != "" {
			leaked.Store(true)
		}
		if r.URL.Path == "/x" {
			http.Redirect(rw, r, "/y", http.StatusFound)
		}
	})
	home := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			t.Error("the first request went without a token")
		}
		http.Redirect(rw, r, elsewhere.URL+"/x", http.StatusFound)
	}))
	defer home.Close()
	resp, err := (&http.Client{Transport: c.Transport(nil)}).Get(home.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if leaked.Load() {
		t.Fatal("the token followed a redirect to another origin")
	}
}

func TestMetadataMustNameTheExpectedIssuer(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	const id = "ai-agent://dev/meta"
	k := registered(t, w, id, []string{"r"}, nil)
	c, _ := sdk.NewClient(w.URL, id, k, sdk.WithIssuer("https://warden.example.com"))
	if _, err := c.FetchToken(t.Context()); err == nil || !strings.Contains(err.Error(), "names the issuer") {
		t.Fatalf("a server announcing another issuer: %v", err)
	}
}

// A DPoP proof is a compact JWS the verifier accepts: typ dpop+jwt, the
// public key in its header, the request's method and URL without query,
// the access token's hash, a fresh jti each time.
func TestDPoPProof(t *testing.T) {
	k := sdk.GenerateKey()
	v := identity.NewDPoPVerifier(identity.DPoPConfig{})
	seen := map[string]bool{}
	for range 3 {
		proof, err := k.DPoPProof("POST", "https://gw.example/mcp?x=1#f", "the-token")
		if err != nil {
			t.Fatal(err)
		}
		p, err := v.Verify(proof, identity.DPoPCheck{Method: "POST", URL: "https://gw.example/mcp", AccessToken: "the-token", JKT: k.Thumbprint()})
		if err != nil {
			t.Fatalf("%v: %s", err, proof)
		}
		if seen[p.ID] {
			t.Fatalf("jti %s used twice", p.ID)
		}
		seen[p.ID] = true
	}
	proof, _ := k.DPoPProof("POST", "https://gw.example/mcp", "")
	for _, c := range []identity.DPoPCheck{
		{Method: "GET", URL: "https://gw.example/mcp"},
		{Method: "POST", URL: "https://gw.example/other"},
		{Method: "POST", URL: "https://gw.example/mcp", AccessToken: "the-token"},
		{Method: "POST", URL: "https://gw.example/mcp", JKT: sdk.GenerateKey().Thumbprint()},
	} {
		if _, err := v.Verify(proof, c); err == nil {
			t.Errorf("a proof for POST https://gw.example/mcp, no token, passed %+v", c)
		}
	}
	// A proof whose signature does not match its content is refused.
	parts := strings.Split(proof, ".")
	other, _ := k.DPoPProof("POST", "https://gw.example/other", "")
	forged := parts[0] + "." + strings.Split(other, ".")[1] + "." + parts[2]
	if _, err := v.Verify(forged, identity.DPoPCheck{Method: "POST", URL: "https://gw.example/other"}); err == nil {
		t.Error("a proof with another proof's claims passed")
	}
}

// A token refused as invalid (revoked, by a person or a step-up) is
// replaced, and the request sent again once, body and all; a request whose
// body cannot be sent again gets the refusal.
func TestTransportReplacesARefusedToken(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	const id = "ai-agent://dev/revoked"
	c, err := sdk.NewClient(w.URL, id, registered(t, w, id, []string{"r"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	var mu sync.Mutex
	rs := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		_, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		if _, err := w.App.Verifier.Verify(r.Context(), tok); err != nil {
			rw.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			rw.WriteHeader(http.StatusUnauthorized)
			return
		}
		rw.WriteHeader(http.StatusNoContent)
	}))
	defer rs.Close()
	hc := &http.Client{Transport: c.Transport(nil)}
	post := func(body io.Reader) int {
		req, _ := http.NewRequest("POST", rs.URL+"/call", body)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(strings.NewReader(`{"n":1}`)); code != http.StatusNoContent {
		t.Fatalf("first call: HTTP %d", code)
	}
	if _, err := w.App.Registry.RevokeTokens(t.Context(), "admin:test", id, "test"); err != nil {
		t.Fatal(err)
	}
	if code := post(strings.NewReader(`{"n":2}`)); code != http.StatusNoContent {
		t.Fatalf("after the revocation: HTTP %d", code)
	}
	if len(bodies) != 3 || bodies[1] != `{"n":2}` || bodies[2] != `{"n":2}` {
		t.Fatalf("bodies %q: want the second call sent twice, whole", bodies)
	}
	if _, err := w.App.Registry.RevokeTokens(t.Context(), "admin:test", id, "test"); err != nil {
		t.Fatal(err)
	}
	if code := post(io.MultiReader(strings.NewReader(`{"n":3}`))); code != http.StatusUnauthorized {
		t.Fatalf("a body that cannot be sent again: HTTP %d, want the refusal", code)
	}
}

// Under a step-up, an agent's earlier tokens are revoked, its new ones live
// a minute at most, and each request must carry a DPoP proof though its
// trust domain asks for none.
func TestStepUp(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	ctx := t.Context()
	const id = "ai-agent://dev/suspect" // dev: no DPoP required
	k := registered(t, w, id, []string{"r"}, nil)
	c, err := sdk.NewClient(w.URL, id, k)
	if err != nil {
		t.Fatal(err)
	}
	before, err := c.FetchToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const url = "http://gw.example/mcp"
	if _, err := w.App.Verifier.VerifyRequest(ctx, identity.Request{Token: before.AccessToken, Method: "POST", URL: url}); err != nil {
		t.Fatalf("before the step-up, a bearer token: %v", err)
	}
	if _, err := w.App.Registry.StepUp(ctx, "admin:test", id, time.Now().Add(-time.Minute), "in the past"); err == nil {
		t.Fatal("a step-up that ended before it began was accepted")
	}
	if _, err := w.App.Registry.StepUp(ctx, "admin:test", id, time.Now().Add(time.Hour), "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.App.Verifier.Verify(ctx, before.AccessToken); err == nil {
		t.Fatal("a token held before the step-up is still accepted")
	}
	after, err := c.FetchToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if left := time.Until(after.Expiry); left > identity.StepUpTokenTTL {
		t.Fatalf("a token issued under the step-up lives %v", left)
	}
	if _, err := w.App.Verifier.VerifyRequest(ctx, identity.Request{Token: after.AccessToken, Method: "POST", URL: url}); !errors.Is(err, identity.ErrDPoPRequired) {
		t.Fatalf("under the step-up, a request without a proof: %v", err)
	}
	proof, err := k.DPoPProof("POST", url, after.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.App.Verifier.VerifyRequest(ctx, identity.Request{Token: after.AccessToken, DPoP: proof, Method: "POST", URL: url}); err != nil {
		t.Fatalf("under the step-up, a request with a proof: %v", err)
	}
	// A person who sets the agent active again ends the step-up.
	a, err := w.App.Registry.SetStatus(ctx, "admin:test", id, "active", "checked")
	if err != nil {
		t.Fatal(err)
	}
	if identity.SteppedUp(a, time.Now()) {
		t.Fatal("enabling the agent did not end its step-up")
	}
}
