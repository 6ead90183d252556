package enforce_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/enforce"
	"github.com/warden-run/warden/sdk"
)

// TestProofRateIsTooManyRequests: an agent past its key's DPoP proof rate
// is answered 429 with Retry-After at an enforcement point, not 503 "state
// unavailable" as when its share of the replay memory was full.
func TestProofRateIsTooManyRequests(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	resource := "http://" + ln.Addr().String() + "/api"
	w := apptest.Start(t, func(c *config.Config) {
		c.Identity.Resources = []string{resource}
		c.Identity.DPoP.ProofsPerKey = config.RateLimit{Rate: 0.5, Burst: 3}
	})
	edge := &enforce.Edge{Verifier: w.App.Verifier, Resource: resource, MetadataURL: enforce.MetadataURL("http", ln.Addr().String(), "/api")}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if _, ok := edge.Authenticate(rw, r, resource); ok {
			io.WriteString(rw, "ok")
		}
	}))
	srv.Listener = ln
	srv.Start()
	defer srv.Close()

	const id = "ai-agent://prod/busy"
	c, err := sdk.NewClient(w.URL, id, w.Register(t, id, "r"), sdk.WithResource(resource), sdk.WithDPoP())
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: c.Transport(nil)}
	get := func() (*http.Response, string) {
		resp, err := hc.Get(resource)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	for i := range 3 {
		if resp, body := get(); resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d within the rate: %d %s", i, resp.StatusCode, body)
		}
	}
	resp, body := get()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "DPoP proofs") {
		t.Fatalf("past the rate: %d %q Retry-After %q", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if st := w.App.Verifier.DPoPStats(); st.RefusedRate != 1 || st.RefusedFull != 0 {
		t.Fatalf("stats %+v", st)
	}
}
