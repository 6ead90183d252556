package server_test

import (
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/sdk"
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
	w := apptest.Start(b, func(c *config.Config) {
		// One agent stands for the many a server sees: its own rate of
		// requests is out of the way.
		c.Identity.TokenEndpoint.RequestsPerAgent = config.RateLimit{Rate: math.MaxInt32, Burst: math.MaxInt32}
		if edit != nil {
			edit(c)
		}
	})
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

// BenchmarkTokenUnderFlood measures a legitimate agent's token requests, one
// at a time from its own address, while four clients at another address
// send bad client assertions as fast as they can: the attack of the token
// endpoint without a brake. Reports the legitimate requests' p50 and the
// flood's requests per second.
func BenchmarkTokenUnderFlood(b *testing.B) {
	w := apptest.Start(b, func(c *config.Config) {
		// The agent asks for every token of the run: its own rate of
		// requests is out of the way.
		c.Identity.TokenEndpoint.RequestsPerAgent = config.RateLimit{Rate: math.MaxInt32, Burst: math.MaxInt32}
	})
	const id = "ai-agent://dev/bench"
	key := w.Register(b, id, "r")
	attacker := sdk.GenerateKey()
	form := func(a string) string {
		return url.Values{"grant_type": {"client_credentials"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}}.Encode()
	}
	bad := make([]string, 256)
	for i := range bad {
		a, err := attacker.Assertion(id, w.URL)
		if err != nil {
			b.Fatal(err)
		}
		bad[i] = form(a)
	}
	good := make([]string, b.N)
	for i := range good {
		a, err := key.Assertion(id, w.URL)
		if err != nil {
			b.Fatal(err)
		}
		good[i] = form(a)
	}
	flooder, agent := loopbackClient("127.0.0.3"), loopbackClient("127.0.0.2")
	stop := make(chan struct{})
	var flood atomic.Int64
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := flooder.Post(w.URL+"/oauth/token", "application/x-www-form-urlencoded", strings.NewReader(bad[i%len(bad)]))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					flood.Add(1)
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	lat := make([]time.Duration, b.N)
	flood.Store(0)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		resp, err := agent.Post(w.URL+"/oauth/token", "application/x-www-form-urlencoded", strings.NewReader(good[i]))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("HTTP %d", resp.StatusCode)
		}
		lat[i] = time.Since(start)
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(flood.Load())/b.Elapsed().Seconds(), "flood-req/s")
}

// loopbackClient is an HTTP client whose connections come from the
// loopback address ip, a source of its own for the server.
func loopbackClient(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 8}}
}
