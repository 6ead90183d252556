package sdk_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/sdk"
)

const enforcerPolicy = `package warden.authz

default allow := false

allow if {
	input.action == "http:GET"
	startswith(input.resource.id, "orders/")
}

deny contains "too_many" if to_number(input.args.query.limit) > 100

obligations["redact"] := ["card"] if endswith(input.resource.id, "/masked")
`

// A Go service as its own enforcement point, asking a real Warden server.
func TestEnforcerMiddleware(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var mu sync.Mutex
	var seen []*http.Request
	svc := httptest.NewUnstartedServer(nil)
	resource := "http://" + svc.Listener.Addr().String()
	w := apptest.Start(t, func(c *config.Config) { c.Identity.Resources = []string{resource} })
	v, _, _, err := w.App.Policies.Push(ctx, "admin:test", &policy.Bundle{Files: map[string][]byte{"policy.rego": []byte(enforcerPolicy)}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.App.Policies.Activate(ctx, "admin:test", v.ID); err != nil {
		t.Fatal(err)
	}
	cred, _, err := w.App.EnforcementPoints.Register(ctx, "admin:test", decide.Registration{Name: "orders-service", Description: "test", Audience: resource, Trust: []string{"source_ip"}})
	if err != nil {
		t.Fatal(err)
	}
	enf, err := sdk.NewEnforcer(w.URL, cred, resource, sdk.WithResourceName("orders"))
	if err != nil {
		t.Fatal(err)
	}
	applying, err := sdk.NewEnforcer(w.URL, cred, resource, sdk.WithResourceName("orders"), sdk.WithObligations("redact"))
	if err != nil {
		t.Fatal(err)
	}
	handler := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		d, ok := sdk.DecisionFrom(r.Context())
		if !ok || d.Outcome != sdk.Allow {
			t.Errorf("handler reached without an allow: %+v", d)
		}
		mu.Lock()
		seen = append(seen, r)
		mu.Unlock()
		io.WriteString(rw, "ok")
	})
	plain, masking := enf.Middleware(handler), applying.Middleware(handler)
	svc.Config.Handler = http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("via") == "applying" {
			masking.ServeHTTP(rw, r)
			return
		}
		plain.ServeHTTP(rw, r)
	})
	svc.Start()
	defer svc.Close()

	agent := func(id string, aud string, dpop bool) *http.Client {
		k := registered(t, w, id, []string{"agent"}, nil)
		opts := []sdk.Option{sdk.WithResource(aud)}
		if dpop {
			opts = append(opts, sdk.WithDPoP())
		}
		c, err := sdk.NewClient(w.URL, id, k, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return &http.Client{Transport: c.Transport(nil)}
	}
	get := func(c *http.Client, url string) (int, string, http.Header) {
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	dev := agent("ai-agent://dev/orders-reader", resource, false)
	prod := agent("ai-agent://prod/orders-reader", resource, true)
	wrongAud := agent("ai-agent://dev/elsewhere", "warden", false)

	if code, body, h := get(dev, svc.URL+"/orders/7?limit=5"); code != 200 || body != "ok" || !strings.HasPrefix(h.Get("Warden-Decision-Id"), "dec_") {
		t.Fatalf("allowed: %d %s", code, body)
	}
	mu.Lock()
	last := seen[len(seen)-1]
	mu.Unlock()
	if last.Header.Get("Authorization") != "" || last.Header.Get("DPoP") != "" {
		t.Fatalf("the handler saw the agent's credentials: %v", last.Header)
	}
	if code, body, _ := get(prod, svc.URL+"/orders/7"); code != 200 {
		t.Fatalf("allowed with DPoP: %d %s", code, body)
	}
	var refusal struct {
		Error      string `json:"error"`
		DecisionID string `json:"decision_id"`
	}
	code, body, _ := get(dev, svc.URL+"/orders/7?limit=500")
	if json.Unmarshal([]byte(body), &refusal); code != 403 || refusal.Error != "denied" || !strings.HasPrefix(refusal.DecisionID, "dec_") {
		t.Fatalf("denied: %d %s", code, body)
	}
	if code, _, h := get(wrongAud, svc.URL+"/orders/7"); code != 401 || !strings.Contains(h.Get("WWW-Authenticate"), "warden.token_wrong_audience") {
		t.Fatalf("token for another resource: %d %v", code, h)
	}
	if code, _, _ := get(dev, svc.URL+"/orders/../admin"); code != 400 {
		t.Fatalf("dot segments: %d", code)
	}
	// An allow whose obligation the handler does not apply is refused;
	// declared, the handler gets it.
	if code, body, _ := get(dev, svc.URL+"/orders/masked"); code != 403 {
		t.Fatalf("an obligation the handler does not apply: %d %s", code, body)
	}
	if code, body, _ := get(dev, svc.URL+"/orders/masked?via=applying"); code != 200 || body != "ok" {
		t.Fatalf("an obligation the handler applies: %d %s", code, body)
	}
	for _, path := range []string{"/orders/a;x/7", "/orders/a%2F7"} {
		if code, _, _ := get(dev, svc.URL+path); code != 400 {
			t.Fatalf("%s: %d", path, code)
		}
	}
	if code, _, _ := get(dev, svc.URL+"/orders/..;/admin"); code != 400 {
		t.Fatalf("dot segment with a parameter: %d", code)
	}
	// A body policy could not read as the handler may: refused.
	for name, ct := range map[string][]string{"unreadable": {"application/json garbage"}, "twice": {"text/plain", "application/json"}} {
		req, err := http.NewRequest("GET", svc.URL+"/orders/7", strings.NewReader(`{"limit": 500}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header["Content-Type"] = ct
		resp, err := dev.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("Content-Type %s: %d", name, resp.StatusCode)
		}
	}
	if code, _, _ := get(http.DefaultClient, svc.URL+"/orders/7"); code != 401 {
		t.Fatalf("no token: %d", code)
	}

	// No decision, no entry: Warden unreachable, or too slow.
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
		io.WriteString(rw, `{"decision_id": "dec_x", "outcome": "allow"}`)
	}))
	defer slow.Close()
	for name, server := range map[string]string{"unreachable": gone.URL, "slow": slow.URL} {
		e, _ := sdk.NewEnforcer(server, cred, resource, sdk.WithDecisionTimeout(100*time.Millisecond))
		h := e.Middleware(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { t.Errorf("%s: the handler ran", name) }))
		req := httptest.NewRequest("GET", resource+"/orders/7", nil)
		req.Header.Set("Authorization", "Bearer x")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 503 {
			t.Errorf("%s Warden: status %d", name, rec.Code)
		}
	}
}

// The middleware shares the enforcement points' rules (one package for
// them): it never follows a redirect from its Warden server, which would
// carry the agent's token and the service's credential elsewhere; it reads
// the Authorization header as strictly as the gateway does; and a key past
// its DPoP proof rate gets 429, not 401.
func TestEnforcerSharesTheEnforcementPointsRules(t *testing.T) {
	t.Parallel()
	elsewhere := 0
	other := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		elsewhere++
		io.WriteString(rw, `{"decision_id":"dec_x","outcome":"allow","reasons":[]}`)
	}))
	defer other.Close()
	answer := `{"decision_id":"dec_y","outcome":"deny","reasons":["warden.dpop_rate_exceeded"]}`
	warden := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { io.WriteString(rw, answer) }))
	defer warden.Close()
	redirecting := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		http.Redirect(rw, r, other.URL+"/v1/decide", http.StatusTemporaryRedirect)
	}))
	defer redirecting.Close()
	for _, tc := range []struct {
		name, server string
		auth         []string
		want         int
	}{
		{"a redirect is not followed", redirecting.URL, []string{"Bearer tok"}, http.StatusServiceUnavailable},
		{"two Authorization headers", warden.URL, []string{"Bearer a", "Bearer b"}, http.StatusUnauthorized},
		{"a token with a space", warden.URL, []string{"Bearer a b"}, http.StatusUnauthorized},
		{"the DPoP scheme without a proof", warden.URL, []string{"DPoP tok"}, http.StatusUnauthorized},
		{"the proof rate", warden.URL, []string{"Bearer tok"}, http.StatusTooManyRequests},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enf, err := sdk.NewEnforcer(tc.server, "pep-credential", "https://orders.internal")
			if err != nil {
				t.Fatal(err)
			}
			reached := false
			h := enf.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }))
			r := httptest.NewRequest("GET", "/orders/1", nil)
			for _, a := range tc.auth {
				r.Header.Add("Authorization", a)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Code != tc.want || reached {
				t.Fatalf("status %d (handler reached %v), want %d: %s", rec.Code, reached, tc.want, rec.Body)
			}
		})
	}
	if elsewhere != 0 {
		t.Fatal("the redirect was followed")
	}
}
