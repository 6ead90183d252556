package enforce_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/enforce"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/wire"
)

// A Warden server that answers anything but a decision is a deny: an error
// status, garbage, an answer too slow, a redirect (not followed: it would
// carry the agent's token elsewhere).
func TestRemoteFailsClosed(t *testing.T) {
	t.Parallel()
	elsewhere := 0
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere++
		w.Write([]byte(`{"id":"dec_x","outcome":"allow"}`))
	}))
	defer other.Close()
	for name, h := range map[string]http.HandlerFunc{
		"500":     func(w http.ResponseWriter, r *http.Request) { http.Error(w, "oops", 500) },
		"garbage": func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("not json")) },
		"no id":   func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"outcome":"allow"}`)) },
		"slow":    func(w http.ResponseWriter, r *http.Request) { time.Sleep(300 * time.Millisecond) },
		"redirect": func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/v1/decide", http.StatusTemporaryRedirect)
		},
	} {
		srv := httptest.NewServer(h)
		r := enforce.Remote{Client: wire.Client{Server: srv.URL, Credential: "pep-credential", Timeout: 100 * time.Millisecond}}
		d, err := r.Decide(context.Background(), &decide.Request{Token: "t", Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool", ID: "a/b"}})
		if err != nil || d.Outcome == policy.Allow || !slices.Contains(d.Reasons, enforce.ReasonNoDecision) {
			t.Errorf("%s: %+v %v", name, d, err)
		}
		srv.Close()
	}
	if elsewhere != 0 {
		t.Fatal("the redirect was followed")
	}
}
