package siem_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/audittest"
	"github.com/warden-run/warden/internal/audit/siem"
)

// A collector that answers with a redirect must not send the entries, or
// the credential that goes with them, anywhere else: the exporter counts
// the redirect as a failed delivery, retries at the configured URL, and
// its cursor stays where it was.
func TestHTTPExportersDoNotFollowRedirects(t *testing.T) {
	t.Parallel()
	const splunkToken, bearer = "hec-token-for-redirect-test", "ocsf-bearer-for-redirect-test"
	secret := []byte("0123456789abcdef-webhook-secret")
	exporters := map[string]func(url string) (siem.Exporter, error){
		"splunk_hec": func(url string) (siem.Exporter, error) {
			return siem.NewSplunk(siem.HTTPConfig{URL: url}, splunkToken)
		},
		"ocsf": func(url string) (siem.Exporter, error) {
			return siem.NewOCSF(siem.HTTPConfig{URL: url}, http.Header{"Authorization": {"Bearer " + bearer}})
		},
		"webhook": func(url string) (siem.Exporter, error) {
			return siem.NewWebhook(siem.HTTPConfig{URL: url}, secret)
		},
		// A client of the caller's own is made safe too.
		"webhook with its own client": func(url string) (siem.Exporter, error) {
			return siem.NewWebhook(siem.HTTPConfig{URL: url, Client: &http.Client{Timeout: 5 * time.Second}}, secret)
		},
	}
	for name, newExporter := range exporters {
		for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
			t.Run(fmt.Sprintf("%s %d", name, status), func(t *testing.T) {
				t.Parallel()
				var elsewhere, asked atomic.Int64
				other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					elsewhere.Add(1)
				}))
				defer other.Close()
				collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					asked.Add(1)
					http.Redirect(w, r, other.URL+"/collect", status)
				}))
				defer collector.Close()
				exp, err := newExporter(collector.URL + "/services/collector/event")
				if err != nil {
					t.Fatal(err)
				}
				l, closeLog := newLog(t, filepath.Join(t.TempDir(), "audit"), audittest.Signer(t))
				defer closeLog()
				appendN(t, l, 0, 3)

				err = exp.Send(t.Context(), stored(t, l, 3))
				if err == nil || !strings.Contains(err.Error(), "redirect") {
					t.Fatalf("a redirect answer: %v, want a failed delivery that says it was a redirect", err)
				}
				for _, secret := range []string{splunkToken, bearer, string(secret)} {
					if strings.Contains(err.Error(), secret) {
						t.Fatalf("the error carries a credential: %v", err)
					}
				}
				stop := run(t, l, "redirected", exp)
				deadline := time.Now().Add(10 * time.Second)
				for asked.Load() < 4 && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
				stop()
				if asked.Load() < 4 {
					t.Fatalf("the exporter asked the collector %d times; it should keep retrying there", asked.Load())
				}
				if n := elsewhere.Load(); n != 0 {
					t.Fatalf("%d requests followed the redirect to another host", n)
				}
				if n, _ := l.Backend().Cursor(context.Background(), "siem-redirected"); n != 0 {
					t.Fatalf("cursor moved to %d although nothing was delivered", n)
				}
			})
		}
	}
}

// stored reads the first n entries of l as an exporter gets them.
func stored(t *testing.T, l *audit.Log, n int) []audit.Stored {
	t.Helper()
	data, err := l.Read(t.Context(), 0, int64(n))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]audit.Stored, len(data))
	for i, d := range data {
		e, err := audit.DecodeEntry(d)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = audit.Stored{Entry: e, Data: d}
	}
	return out
}
