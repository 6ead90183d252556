package siem_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/audittest"
	"github.com/warden-run/warden/internal/audit/filelog"
	"github.com/warden-run/warden/internal/audit/siem"
)

// newLog opens a file log in dir (reopening what is there).
func newLog(t *testing.T, dir string, s *audit.CheckpointSigner) (*audit.Log, func()) {
	t.Helper()
	b, err := filelog.Open(filelog.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(audit.Config{}, b, s)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !l.Leading() {
		if time.Now().After(deadline) {
			t.Fatal("the log does not lead")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return l, func() { l.Close(); b.Close() }
}

func appendN(t *testing.T, l *audit.Log, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if _, err := l.Append(context.Background(), audittest.Entry(i)); err != nil {
			t.Fatal(err)
		}
	}
}

// collector is an HTTP receiver that decodes what it gets and can be told
// to fail.
type collector struct {
	mu      sync.Mutex
	failFor int // answer 503 to this many requests first
	got     []map[string]any
	check   func(r *http.Request, body []byte) ([]map[string]any, error)
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failFor > 0 {
		c.failFor--
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	events, err := c.check(r, body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.got = append(c.got, events...)
}

// indexes returns the distinct entry indexes received, and whether every
// one from 0 to n-1 arrived.
func (c *collector) indexes(index func(map[string]any) int64, n int) (map[int64]bool, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[int64]bool{}
	for _, ev := range c.got {
		seen[index(ev)] = true
	}
	for i := int64(0); i < int64(n); i++ {
		if !seen[i] {
			return seen, false
		}
	}
	return seen, true
}

func waitAll(t *testing.T, c *collector, index func(map[string]any) int64, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := c.indexes(index, n); ok {
			return
		}
		if time.Now().After(deadline) {
			seen, _ := c.indexes(index, n)
			t.Fatalf("after 10s the receiver has %d of %d entries", len(seen), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func run(t *testing.T, l *audit.Log, name string, exp siem.Exporter) func() {
	t.Helper()
	r, err := siem.NewRunner(siem.Config{Name: name, Batch: 7, Poll: 10 * time.Millisecond,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}, l, exp)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

func TestSplunkHEC(t *testing.T) {
	t.Parallel()
	c := &collector{failFor: 3, check: func(r *http.Request, body []byte) ([]map[string]any, error) {
		if r.Header.Get("Authorization") != "Splunk hec-token-for-tests" || r.URL.Path != "/services/collector/event" {
			return nil, errString("wrong token or path")
		}
		// Concatenated JSON events, each with time, source, sourcetype and event.
		var out []map[string]any
		dec := json.NewDecoder(strings.NewReader(string(body)))
		for dec.More() {
			var ev map[string]any
			if err := dec.Decode(&ev); err != nil {
				return nil, err
			}
			if ev["sourcetype"] != "warden:audit" || ev["time"] == nil || ev["event"] == nil {
				return nil, errString("not a HEC event")
			}
			out = append(out, ev)
		}
		return out, nil
	}}
	srv := httptest.NewServer(c)
	defer srv.Close()
	l, closeLog := newLog(t, filepath.Join(t.TempDir(), "audit"), audittest.Signer(t))
	defer closeLog()
	appendN(t, l, 0, 30)
	exp, err := siem.NewSplunk(siem.HTTPConfig{URL: srv.URL + "/services/collector/event"}, "hec-token-for-tests")
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, l, "splunk", exp)
	defer stop()
	waitAll(t, c, func(ev map[string]any) int64 { return int64(ev["event"].(map[string]any)["index"].(float64)) }, 30)
}

func TestOCSF(t *testing.T) {
	t.Parallel()
	c := &collector{check: func(r *http.Request, body []byte) ([]map[string]any, error) {
		if r.Header.Get("Authorization") != "Bearer ocsf-test" {
			return nil, errString("no authorization")
		}
		var evs []map[string]any
		if err := json.Unmarshal(body, &evs); err != nil {
			return nil, err
		}
		for _, ev := range evs {
			class := ev["class_uid"].(float64)
			kind := ev["unmapped"].(map[string]any)["kind"]
			if kind == "decision" && class != 3003 || kind != "decision" && class != 6003 {
				return nil, errString("wrong class for " + kind.(string))
			}
			if ev["type_uid"].(float64) != class*100+99 || ev["metadata"].(map[string]any)["product"] == nil {
				return nil, errString("not OCSF")
			}
			if out := ev["unmapped"].(map[string]any)["outcome"]; (out == "deny") != (ev["status"] == "Failure") {
				return nil, errString("status does not follow the outcome")
			}
		}
		return evs, nil
	}}
	srv := httptest.NewServer(c)
	defer srv.Close()
	l, closeLog := newLog(t, filepath.Join(t.TempDir(), "audit"), audittest.Signer(t))
	defer closeLog()
	appendN(t, l, 0, 20)
	exp, err := siem.NewOCSF(siem.HTTPConfig{URL: srv.URL}, http.Header{"Authorization": {"Bearer ocsf-test"}})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, l, "ocsf", exp)
	defer stop()
	waitAll(t, c, func(ev map[string]any) int64 {
		n, _ := strconv.ParseInt(ev["metadata"].(map[string]any)["uid"].(string), 10, 64)
		return n
	}, 20)
}

func TestWebhookSignedResumesAfterRestart(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef-webhook-secret")
	var forged int
	c := &collector{}
	c.check = func(r *http.Request, body []byte) ([]map[string]any, error) {
		want := siem.WebhookSignature(secret, r.Header.Get("X-Warden-Timestamp"), body)
		if r.Header.Get("X-Warden-Signature") != want {
			forged++
			return nil, errString("bad signature")
		}
		var b struct {
			Entries []map[string]any `json:"entries"`
		}
		if err := json.Unmarshal(body, &b); err != nil {
			return nil, err
		}
		return b.Entries, nil
	}
	srv := httptest.NewServer(c)
	defer srv.Close()
	dir := filepath.Join(t.TempDir(), "audit")
	s := audittest.Signer(t)
	l, closeLog := newLog(t, dir, s)
	appendN(t, l, 0, 25)
	exp, _ := siem.NewWebhook(siem.HTTPConfig{URL: srv.URL}, secret)
	stop := run(t, l, "hook", exp)
	index := func(ev map[string]any) int64 { return int64(ev["index"].(float64)) }
	waitAll(t, c, index, 25)
	// The last batch may be received, but not yet recorded as delivered
	// (a stop then would send it again: at least once). Wait for the cursor.
	waitCursor(t, l, "siem-hook", 25)
	stop()
	closeLog()

	// A restart: new entries go out, the delivered ones are not sent again.
	c.mu.Lock()
	before := len(c.got)
	c.mu.Unlock()
	l, closeLog = newLog(t, dir, s)
	defer closeLog()
	appendN(t, l, 25, 10)
	exp, _ = siem.NewWebhook(siem.HTTPConfig{URL: srv.URL}, secret)
	stop = run(t, l, "hook", exp)
	defer stop()
	waitAll(t, c, index, 35)
	c.mu.Lock()
	defer c.mu.Unlock()
	if after := len(c.got) - before; after != 10 {
		t.Fatalf("after the restart %d entries were sent, want the 10 new ones", after)
	}
	if forged != 0 {
		t.Fatalf("%d requests failed the signature check", forged)
	}
	// And a receiver checking the signature refuses a body that was altered.
	if siem.WebhookSignature(secret, "1", []byte(`{"entries":[]}`)) == siem.WebhookSignature(secret, "1", []byte(`{"entries":[{}]}`)) {
		t.Fatal("the signature does not cover the body")
	}
}

func TestAFailingExporterDoesNotHoldUpAppends(t *testing.T) {
	t.Parallel()
	c := &collector{failFor: 1 << 30, check: func(*http.Request, []byte) ([]map[string]any, error) { return nil, nil }}
	srv := httptest.NewServer(c)
	defer srv.Close()
	l, closeLog := newLog(t, filepath.Join(t.TempDir(), "audit"), audittest.Signer(t))
	defer closeLog()
	exp, _ := siem.NewOCSF(siem.HTTPConfig{URL: srv.URL}, nil)
	stop := run(t, l, "down", exp)
	defer stop()
	appendN(t, l, 0, 200) // every append succeeds while the exporter keeps failing
	if n, _ := l.Backend().Cursor(context.Background(), "siem-down"); n != 0 {
		t.Fatalf("cursor moved to %d although nothing was delivered", n)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func waitCursor(t *testing.T, l *audit.Log, name string, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := l.Backend().Cursor(context.Background(), name)
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cursor %s is %d (%v), want %d", name, got, err, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// An incident the automatic response opens reaches the SIEM as an OCSF
// Detection Finding, with the signals and the decision that fired them.
func TestOCSFIncidentIsADetectionFinding(t *testing.T) {
	t.Parallel()
	e := &audit.Entry{Index: 42, Kind: audit.KindResponse, Actor: audit.ResponseActor, Action: audit.ActionIncidentOpen,
		Target: "ai-agent://prod/finance/trader", Outcome: "done", Time: time.Date(2026, 12, 5, 1, 0, 0, 0, time.UTC),
		Detail: json.RawMessage(`{"incident":"inc_0001","signals":["deny_burst","not_permitted"],"score":80,"level":"critical","audit_index":41}`)}
	ev := siem.OCSFEvent(e, []byte(`{}`))
	fi, _ := ev["finding_info"].(map[string]any)
	if ev["class_uid"] != 2004 || ev["category_uid"] != 2 || ev["activity_id"] != 1 || ev["type_uid"] != 200401 || fi == nil {
		t.Fatalf("not a created Detection Finding: %v", ev)
	}
	if fi["uid"] != "inc_0001" || len(fi["types"].([]string)) != 2 || ev["severity_id"] != 4 {
		t.Fatalf("finding_info %v, severity %v", fi, ev["severity_id"])
	}
	// Other responses stay API Activity.
	e.Action = "agent.status"
	if ev := siem.OCSFEvent(e, []byte(`{}`)); ev["class_uid"] != 6003 || ev["finding_info"] != nil {
		t.Fatalf("a status change: %v", ev)
	}
}

// A decision's lineage goes out with it, as an enrichment.
func TestOCSFCarriesLineage(t *testing.T) {
	t.Parallel()
	e := &audit.Entry{Index: 50, Kind: audit.KindDecision, DecisionID: "dec_1", Agent: "ai-agent://prod/office/assistant", Action: "tools/call",
		Outcome: "deny", Time: time.Date(2026, 12, 5, 1, 0, 0, 0, time.UTC), Detail: json.RawMessage(`{"lineage":{"reads":[41,44],"untrusted_reads":[41],"evicted":0}}`)}
	b, _ := json.Marshal(siem.OCSFEvent(e, []byte(`{}`)))
	if !strings.Contains(string(b), `"enrichments":[{"data":{"reads":[41,44],"untrusted_reads":[41]},"name":"warden.lineage"`) {
		t.Fatalf("no lineage: %s", b)
	}
	e.Detail = nil
	if b, _ := json.Marshal(siem.OCSFEvent(e, []byte(`{}`))); strings.Contains(string(b), "enrichments") {
		t.Fatalf("lineage from nowhere: %s", b)
	}
}
