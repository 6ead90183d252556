package server_test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/sdk"
)

// TestTokenEndpointBrakesAFloodOfBadAssertions is the regression test of
// the token endpoint without a brake, over HTTP: one client sending bad
// client assertions is answered 429 in the OAuth error shape with
// Retry-After once past its burst of failures, every refusal is accounted
// for in the audit log without an entry each, and an agent elsewhere still
// gets its token, recorded.
func TestTokenEndpointBrakesAFloodOfBadAssertions(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, func(c *config.Config) {
		c.Identity.TokenEndpoint.FailuresPerSource = config.RateLimit{Rate: 0.01, Burst: 10}
		c.Identity.TokenEndpoint.RefusalEntries = config.RateLimit{Rate: 0.01, Burst: 5}
	})
	const id = "ai-agent://dev/flooded"
	key := register(t, w, id, "r")
	attacker := sdk.GenerateKey()
	from := clientFrom(t, "127.0.0.3")
	statuses := map[int]int{}
	var limited map[string]any
	const flood = 60
	for range flood {
		a, err := attacker.Assertion(id, w.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := from.PostForm(w.URL+"/oauth/token", url.Values{"grant_type": {"client_credentials"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}})
		if err != nil {
			t.Fatal(err)
		}
		statuses[resp.StatusCode]++
		if resp.StatusCode == http.StatusTooManyRequests && limited == nil {
			if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || n < 1 {
				t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
			}
			json.NewDecoder(resp.Body).Decode(&limited)
		}
		resp.Body.Close()
	}
	if statuses[http.StatusUnauthorized] != 10 || statuses[http.StatusTooManyRequests] != flood-10 {
		t.Fatalf("statuses %v: want 10 refusals checked, then 429", statuses)
	}
	if limited["error"] != "slow_down" || limited["error_description"] == "" {
		t.Fatalf("429 body %v", limited)
	}

	// The agent itself, from its own address, is not held up by failures
	// made in its name elsewhere.
	c, err := sdk.NewClient(w.URL, id, key, sdk.WithHTTPClient(clientFrom(t, "127.0.0.2")))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.FetchToken(t.Context())
	if err != nil {
		t.Fatalf("the agent from its own address: %v", err)
	}
	w.App.Issuer.Close() // write the summary of what was not recorded one by one
	one, summarised, issued := 0, 0.0, 0
	for _, e := range tokenEntries(t, w) {
		switch {
		case e.Action == "token.refusals":
			var d struct{ Count float64 }
			json.Unmarshal(e.Detail, &d)
			summarised += d.Count
		case e.Outcome == "deny":
			one++
			if strings.Contains(string(e.Detail), "eyJ") {
				t.Fatalf("an entry holds a JWT: %s", e.Detail)
			}
		default:
			issued++
			var d map[string]any
			json.Unmarshal(e.Detail, &d)
			if e.Agent != id || d["source"] != "127.0.0.2" || d["jti"] == nil || strings.Contains(string(e.Detail), tok.AccessToken) {
				t.Fatalf("issuance entry %+v %s", e, e.Detail)
			}
		}
	}
	if issued != 1 {
		t.Fatalf("%d issuance entries, want 1", issued)
	}
	if one > 5 || one+int(summarised) < flood {
		t.Fatalf("%d refusals recorded one by one, %g summarised, of %d", one, summarised, flood)
	}
}

// clientFrom is an HTTP client whose connections come from the loopback
// address ip, a source of its own for the server.
func clientFrom(t *testing.T, ip string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

func tokenEntries(t *testing.T, w *apptest.Instance) []*audit.Entry {
	t.Helper()
	n, err := w.App.Audit.Size(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	data, err := w.App.Audit.Read(t.Context(), 0, n)
	if err != nil {
		t.Fatal(err)
	}
	var out []*audit.Entry
	for _, d := range data {
		e, err := audit.DecodeEntry(d)
		if err != nil {
			t.Fatal(err)
		}
		if e.Kind == audit.KindToken {
			out = append(out, e)
		}
	}
	return out
}

// A refused token request is answered with the id of its record: the
// client learns nothing from it, and an operator finds the refusal, with
// its reason, by it in the audit log.
func TestRefusalNamesItsRecord(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	const id = "ai-agent://dev/refused"
	register(t, w, id, "r")
	a, err := sdk.GenerateKey().Assertion(id, w.URL) // not the agent's key
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.PostForm(w.URL+"/oauth/token", url.Values{"grant_type": {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}})
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]string
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	ref := body["refusal_id"]
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(ref, "ref_") || body["error_description"] != "client authentication failed" {
		t.Fatalf("HTTP %d %v", resp.StatusCode, body)
	}
	found := false
	for _, e := range tokenEntries(t, w) {
		var d struct {
			RefusalID string `json:"refusal_id"`
		}
		json.Unmarshal(e.Detail, &d)
		if d.RefusalID == ref {
			found = e.Outcome == "deny" && len(e.Reasons) == 2 && e.Reasons[0] == "invalid_client"
		}
	}
	if !found {
		for _, e := range tokenEntries(t, w) {
			t.Logf("%s %s %v %s", e.Action, e.Outcome, e.Reasons, e.Detail)
		}
		t.Fatalf("no refusal %s in the audit log", ref)
	}
	// The SDK, and so warden token, says it.
	c, err := sdk.NewClient(w.URL, id, sdk.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.FetchToken(t.Context()); err == nil || !strings.Contains(err.Error(), "the server's record of it is ref_") {
		t.Fatalf("FetchToken: %v", err)
	}
}
