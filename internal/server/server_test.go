package server_test

import (
	"crypto/ed25519"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/sdk"
)

// register registers an agent through the admin API and returns its key.
func register(t *testing.T, w *apptest.Instance, id string, roles ...string) *sdk.Key {
	t.Helper()
	k := sdk.GenerateKey()
	body, _ := json.Marshal(map[string]any{"id": id, "roles": roles, "owner": "team-test", "public_key": json.RawMessage(k.PublicJWK())})
	resp := adminDo(t, w, "POST", "/v1/agents", string(body))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register %s: HTTP %d %s", id, resp.StatusCode, readAll(t, resp))
	}
	resp.Body.Close()
	return k
}

func adminDo(t *testing.T, w *apptest.Instance, method, path, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, w.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+w.AdminToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestTokensVerifyWithAnIndependentJOSEImplementation fetches the published
// JWKS over HTTP and verifies issued tokens with go-jose alone: no Warden
// verifier code is involved.
func TestTokensVerifyWithAnIndependentJOSEImplementation(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	const id = "ai-agent://dev/independent"
	key := register(t, w, id, "reader")
	c, err := sdk.NewClient(w.URL, id, key)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.FetchToken(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	// Discover the JWKS from the RFC 8414 metadata, as any client would.
	var meta struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	getJSON(t, w.URL+"/.well-known/oauth-authorization-server", &meta)
	var jwks jose.JSONWebKeySet
	getJSON(t, meta.JWKSURI, &jwks)

	parsed, err := jwt.ParseSigned(tok.AccessToken, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	kid := parsed.Headers[0].KeyID
	keys := jwks.Key(kid)
	if len(keys) != 1 {
		t.Fatalf("kid %q: %d keys in the JWKS", kid, len(keys))
	}
	if _, ok := keys[0].Key.(ed25519.PublicKey); !ok || !keys[0].IsPublic() {
		t.Fatalf("JWKS key is %T", keys[0].Key)
	}
	var claims struct {
		jwt.Claims
		Cnf struct {
			JKT string `json:"jkt"`
		} `json:"cnf"`
		TD    string   `json:"td"`
		Roles []string `json:"roles"`
	}
	if err := parsed.Claims(keys[0].Key, &claims); err != nil {
		t.Fatalf("go-jose refuses the signature: %v", err)
	}
	if err := claims.Claims.ValidateWithLeeway(jwt.Expected{Issuer: meta.Issuer, Subject: id,
		AnyAudience: jwt.Audience{"warden"}, Time: time.Now()}, 0); err != nil {
		t.Fatalf("go-jose refuses the claims: %v", err)
	}
	if claims.Cnf.JKT != key.Thumbprint() || claims.TD != "dev" || len(claims.Roles) != 1 || claims.ID == "" {
		t.Fatalf("claims: %+v", claims)
	}
	if typ := parsed.Headers[0].ExtraHeaders["typ"]; typ != "at+jwt" {
		t.Fatalf("typ header %v", typ)
	}
	// And go-jose refuses the same token with one byte of the payload changed.
	parts := strings.Split(tok.AccessToken, ".")
	b := []byte(parts[1])
	b[10] ^= 1
	if forged, err := jwt.ParseSigned(parts[0]+"."+string(b)+"."+parts[2], []jose.SignatureAlgorithm{jose.EdDSA}); err == nil {
		if err := forged.Claims(keys[0].Key, &claims); err == nil {
			t.Fatal("a modified token verified")
		}
	}
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func TestTokenEndpointHTTP(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	const id = "ai-agent://dev/http"
	key := register(t, w, id, "reader")
	assertion := func() string {
		a, err := key.Assertion(id, w.URL)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	form := func(extra ...string) string {
		v := url.Values{"grant_type": {"client_credentials"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion":      {assertion()}}
		for i := 0; i+1 < len(extra); i += 2 {
			v.Add(extra[i], extra[i+1])
		}
		return v.Encode()
	}
	cases := []struct {
		name       string
		body       string
		header     map[string]string
		wantStatus int
		wantError  string
	}{
		{"valid", form(), nil, 200, ""},
		{"JSON instead of a form", `{"grant_type":"client_credentials"}`, map[string]string{"Content-Type": "application/json"}, 400, "invalid_request"},
		{"repeated parameter", form("scope", "a", "scope", "b"), nil, 400, "invalid_request"},
		{"client secret in a header", form(), map[string]string{"Authorization": "Basic YTpi"}, 401, "invalid_client"},
		{"no grant type", "client_assertion=x", nil, 400, "invalid_request"},
		{"unknown grant", "grant_type=password&username=a&password=b", nil, 400, "unsupported_grant_type"},
		{"bad expires_in", form("expires_in", "soon"), nil, 400, "invalid_request"},
		{"expires_in over 15 minutes", form("expires_in", "901"), nil, 400, "invalid_request"},
		{"forged assertion", strings.Replace(form(), "client_assertion=", "client_assertion=x", 1), nil, 401, "invalid_client"},
		{"unsupported resource", form("resource", "https://elsewhere"), nil, 400, "invalid_target"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", w.URL+"/oauth/token", strings.NewReader(c.body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			for k, v := range c.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			if resp.StatusCode != c.wantStatus {
				t.Fatalf("HTTP %d %s, want %d", resp.StatusCode, body, c.wantStatus)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Fatalf("Cache-Control %q", cc)
			}
			var out map[string]any
			if err := json.Unmarshal([]byte(body), &out); err != nil {
				t.Fatalf("not JSON: %s", body)
			}
			if c.wantError == "" {
				if out["access_token"] == "" || out["token_type"] != "Bearer" || out["expires_in"] != float64(300) {
					t.Fatalf("response %s", body)
				}
				return
			}
			if out["error"] != c.wantError {
				t.Fatalf("error %v, want %s (%s)", out["error"], c.wantError, body)
			}
			if strings.Contains(body, id) {
				t.Fatalf("the error names the agent: %s", body)
			}
		})
	}
}

func TestRevocationEndpoint(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	const id = "ai-agent://dev/revoker"
	key := register(t, w, id, "reader")
	c, _ := sdk.NewClient(w.URL, id, key)
	tok, err := c.FetchToken(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.App.Verifier.Verify(t.Context(), tok.AccessToken); err != nil {
		t.Fatal(err)
	}
	a, _ := key.Assertion(id, w.URL)
	resp, err := http.PostForm(w.URL+"/oauth/revoke", url.Values{"token": {tok.AccessToken},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("revoke: HTTP %d %s", resp.StatusCode, readAll(t, resp))
	}
	resp.Body.Close()
	if _, err := w.App.Verifier.Verify(t.Context(), tok.AccessToken); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("after RFC 7009 revocation: %v", err)
	}
}

func TestAdminAPI(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	register(t, w, "ai-agent://prod/finance/trader", "trader")
	register(t, w, "ai-agent://prod/finance/helper", "trader")
	esc := "/v1/agents/" + url.PathEscape("ai-agent://prod/finance/trader")
	cases := []struct {
		name, method, path, body, token string
		wantStatus                      int
		wantInBody                      string
	}{
		{"no credential", "GET", "/v1/agents", "", "-", 401, "is required"},
		{"wrong credential", "GET", "/v1/agents", "", "wdn_admin_wrong", 401, "the credential given is not valid"},
		{"list", "GET", "/v1/agents", "", "", 200, "ai-agent://prod/finance/trader"},
		{"show by escaped id", "GET", esc, "", "", 200, `"status":"active"`},
		{"show unknown", "GET", "/v1/agents/" + url.PathEscape("ai-agent://prod/ghost"), "", "", 404, "not_found"},
		{"show malformed id", "GET", "/v1/agents/" + url.PathEscape("ai-agent://prod/../x"), "", "", 400, "invalid agent id"},
		{"malformed JSON", "POST", "/v1/agents", `{"id": "ai-agent://prod/x",`, "", 400, "invalid_request"},
		{"wrong type names the field", "POST", "/v1/agents", `{"id": "ai-agent://prod/x", "roles": "trader"}`, "", 400, `field \"roles\"`},
		{"unknown field", "POST", "/v1/agents", `{"id": "ai-agent://prod/x", "rolez": ["a"]}`, "", 400, `unknown field \"rolez\"`},
		{"register twice", "POST", "/v1/agents", `{"id":"ai-agent://prod/finance/trader","roles":["a"],"owner":"o","public_key":{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}}`, "", 409, "conflict"},
		{"limit out of range", "GET", "/v1/agents?limit=0", "", "", 400, "limit"},
		{"a full page says where the next starts", "GET", "/v1/agents?limit=1", "", "", 200, `"next":"ai-agent://prod/finance/helper"`},
		{"the last page has no next", "GET", "/v1/agents?limit=2", "", "", 200, `"}]}`},
		{"quarantine with a chunked empty body", "POST", esc + "/quarantine", "chunked:", "", 200, `"status":"quarantined"`},
		{"disable", "POST", esc + "/disable", `{"reason":"test"}`, "", 200, `"status":"disabled"`},
		{"enable without a body", "POST", esc + "/enable", "", "", 200, `"status":"active"`},
		{"bad grace", "POST", esc + "/keys", `{"public_key":{},"grace":"-1h"}`, "", 400, "grace"},
		{"events", "GET", "/v1/events?target=" + url.QueryEscape("ai-agent://prod/finance/trader"), "", "", 200, `"action":"agent.status"`},
		{"keys", "GET", "/v1/keys", "", "", 200, `"active":true`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var in io.Reader = strings.NewReader(c.body)
			if rest, ok := strings.CutPrefix(c.body, "chunked:"); ok {
				in = io.MultiReader(strings.NewReader(rest)) // unknown length: sent chunked
			}
			req, _ := http.NewRequest(c.method, w.URL+c.path, in)
			switch c.token {
			case "":
				req.Header.Set("Authorization", "Bearer "+w.AdminToken)
			case "-":
			default:
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			if resp.StatusCode != c.wantStatus || !strings.Contains(body, c.wantInBody) {
				t.Fatalf("HTTP %d %s; want %d containing %s", resp.StatusCode, body, c.wantStatus, c.wantInBody)
			}
		})
	}
}

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(w.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("%s: HTTP %d %s", p, resp.StatusCode, body)
		}
	}
}

func TestBodyLimit(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	big := `{"id":"` + strings.Repeat("a", 2<<20) + `"}`
	resp := adminDo(t, w, "POST", "/v1/agents", big)
	if body := readAll(t, resp); resp.StatusCode != 400 || !strings.Contains(body, "larger than") {
		t.Fatalf("HTTP %d %s", resp.StatusCode, body)
	}
}
