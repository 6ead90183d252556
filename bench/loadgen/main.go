// Command loadgen sends the same POST request over and over from a number
// of concurrent keep-alive connections for a while, and reports the
// throughput and latency percentiles of the requests that succeeded. It is
// the load generator of bench/pdp-vs-opa.sh, used on both servers alike.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type header []string

func (h *header) String() string     { return strings.Join(*h, ", ") }
func (h *header) Set(s string) error { *h = append(*h, s); return nil }

// Result is what one run measured.
type Result struct {
	Name       string  `json:"name"`
	Requests   int     `json:"requests"`
	Errors     int     `json:"errors"`
	Seconds    float64 `json:"seconds"`
	PerSecond  float64 `json:"per_second"`
	P50Micros  float64 `json:"p50_us"`
	P90Micros  float64 `json:"p90_us"`
	P99Micros  float64 `json:"p99_us"`
	MaxMicros  float64 `json:"max_us"`
	Concurrent int     `json:"concurrency"`
}

func main() {
	var (
		url, bodyFile, name, expect string
		headers                     header
		conc                        int
		dur, warm                   time.Duration
		distinct                    bool
	)
	flag.StringVar(&name, "name", "run", "name of the run in the output")
	flag.StringVar(&url, "url", "", "URL to POST to")
	flag.StringVar(&bodyFile, "body", "", "file holding the request body")
	flag.Var(&headers, "H", "header 'Name: value' (repeat); a word @file in the value is the file's content")
	flag.StringVar(&expect, "expect", "", "a string every answer must contain (else it counts as an error)")
	flag.IntVar(&conc, "c", 32, "concurrent connections")
	flag.DurationVar(&dur, "d", 10*time.Second, "measured duration")
	flag.DurationVar(&warm, "warmup", 2*time.Second, "unmeasured duration first")
	flag.BoolVar(&distinct, "distinct", false, "replace {{n}} in the body with a number that differs in every request")
	flag.Parse()
	body, err := os.ReadFile(bodyFile)
	if err != nil || url == "" {
		fmt.Fprintln(os.Stderr, "loadgen: -url and -body are required:", err)
		os.Exit(2)
	}
	hdr := http.Header{"Content-Type": {"application/json"}}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			fmt.Fprintf(os.Stderr, "loadgen: -H %q: want 'Name: value'\n", h)
			os.Exit(2)
		}
		// A word "@file" in the value is replaced by the file's content,
		// so that credentials stay out of the command line.
		words := strings.Fields(v)
		for i, w := range words {
			if file, ok := strings.CutPrefix(w, "@"); ok {
				b, err := os.ReadFile(file)
				if err != nil {
					fmt.Fprintln(os.Stderr, "loadgen:", err)
					os.Exit(2)
				}
				words[i] = strings.TrimSpace(string(b))
			}
		}
		v = strings.Join(words, " ")
		hdr.Set(strings.TrimSpace(k), v)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc, DisableCompression: true}}

	var counter atomic.Int64
	var (
		mu        sync.Mutex
		latencies []time.Duration
		errors    int
		firstErr  string
	)
	start := time.Now()
	measureFrom := start.Add(warm)
	end := measureFrom.Add(dur)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			bad := 0
			for {
				t0 := time.Now()
				if t0.After(end) {
					break
				}
				b := body
				if distinct {
					b = bytes.ReplaceAll(body, []byte("{{n}}"), strconv.AppendInt(nil, counter.Add(1), 10))
				}
				req, _ := http.NewRequest("POST", url, bytes.NewReader(b))
				req.Header = hdr.Clone()
				resp, err := client.Do(req)
				ok := err == nil
				var answer []byte
				if ok {
					answer, _ = io.ReadAll(resp.Body)
					resp.Body.Close()
					ok = resp.StatusCode == 200 && (expect == "" || bytes.Contains(answer, []byte(expect)))
				}
				if t0.Before(measureFrom) {
					continue
				}
				if !ok {
					bad++
					mu.Lock()
					if firstErr == "" {
						firstErr = fmt.Sprint(err, " ", string(answer))
					}
					mu.Unlock()
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			errors += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		return float64(latencies[min(len(latencies)-1, int(p*float64(len(latencies))))].Microseconds())
	}
	r := Result{Name: name, Requests: len(latencies), Errors: errors, Seconds: dur.Seconds(), Concurrent: conc,
		PerSecond: float64(len(latencies)) / dur.Seconds(), P50Micros: pct(0.50), P90Micros: pct(0.90), P99Micros: pct(0.99), MaxMicros: pct(1)}
	json.NewEncoder(os.Stdout).Encode(r)
	if errors > 0 {
		fmt.Fprintf(os.Stderr, "loadgen: %s: %d requests failed; the first: %s\n", name, errors, firstErr)
		os.Exit(1)
	}
}
