package server_test

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/config"
)

// BenchmarkTokenEndpoint measures POST /oauth/token end to end over HTTP on
// loopback: form parsing, assertion verification, the durable single-use
// record of its jti, signing and the JSON answer. Client and server share the
// machine; assertions are signed before the timer starts.
func BenchmarkTokenEndpoint(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { benchTokenEndpoint(b, nil) })
	b.Run("postgres", func(b *testing.B) {
		dsn := os.Getenv("WARDEN_TEST_POSTGRES")
		if dsn == "" {
			b.Skip("set WARDEN_TEST_POSTGRES to benchmark on PostgreSQL")
		}
		benchTokenEndpoint(b, func(c *config.Config) { c.Store = apptest.FreshPostgres(b, dsn) })
	})
}

func benchTokenEndpoint(b *testing.B, edit func(*config.Config)) {
	w := apptest.Start(b, edit)
	const id = "ai-agent://dev/bench"
	key := w.Register(b, id, "r")
	bodies := make([]string, b.N)
	for i := range bodies {
		a, err := key.Assertion(id, w.URL)
		if err != nil {
			b.Fatal(err)
		}
		bodies[i] = url.Values{"grant_type": {"client_credentials"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion":      {a}}.Encode()
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var next atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			resp, err := client.Post(w.URL+"/oauth/token", "application/x-www-form-urlencoded", strings.NewReader(bodies[i]))
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("HTTP %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}
