package metrics_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/warden-run/warden/internal/metrics"
)

// scrape reads the handler's answer as Prometheus would.
func scrape(t *testing.T, m *metrics.Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler(nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("the scrape does not parse: %v", err)
	}
	return fams
}

// value is the counter, gauge or histogram count of the sample of fam
// whose labels are labels (name=value pairs); -1 when there is none.
func value(fams map[string]*dto.MetricFamily, fam string, labels ...string) float64 {
	f := fams[fam]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

func TestDecisionsAndTheirReasons(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	m.Decided("mcp-gateway", "allow", nil, 300*time.Microsecond)
	m.Decided("mcp-gateway", "deny", []string{"warden.deny.default", "finance.limit"}, 2*time.Millisecond)
	m.Decided("", "deny", []string{"warden.token_invalid"}, time.Millisecond)
	fams := scrape(t, m)
	for _, c := range []struct {
		name   string
		fam    string
		labels []string
		want   float64
	}{
		{"allowed at the gateway", "warden_decisions_total", []string{"enforcement_point", "mcp-gateway", "outcome", "allow"}, 1},
		{"denied at the gateway", "warden_decisions_total", []string{"enforcement_point", "mcp-gateway", "outcome", "deny"}, 1},
		{"no enforcement point is the API", "warden_decisions_total", []string{"enforcement_point", "api", "outcome", "deny"}, 1},
		{"each reason counts", "warden_decision_reasons_total", []string{"outcome", "deny", "reason", "finance.limit"}, 1},
		{"latency per point", "warden_decision_duration_seconds", []string{"enforcement_point", "mcp-gateway"}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := value(fams, c.fam, c.labels...); got != c.want {
				t.Errorf("%s%v = %v, want %v", c.fam, c.labels, got, c.want)
			}
		})
	}
	// The 2 ms deny lies in the 2.5 ms bucket and not in the 1 ms one.
	for _, mt := range fams["warden_decision_duration_seconds"].Metric {
		if mt.Label[0].GetValue() != "mcp-gateway" {
			continue
		}
		for _, b := range mt.Histogram.Bucket {
			if b.GetUpperBound() == 1e-3 && b.GetCumulativeCount() != 1 || b.GetUpperBound() == 2.5e-3 && b.GetCumulativeCount() != 2 {
				t.Errorf("bucket le=%v holds %d", b.GetUpperBound(), b.GetCumulativeCount())
			}
		}
	}
}

// Reasons are the policy's words, and a policy may put request data in
// them: past 256 distinct reasons, the rest count as "other", so the
// series stay bounded. Grants and error codes come from the request, and
// only those the endpoint serves are named.
func TestLabelsStayBounded(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	for i := range 1000 {
		m.Decided("gw", "deny", []string{fmt.Sprintf("deny.%d", i)}, time.Millisecond)
	}
	for i := range 200 {
		m.Decided(fmt.Sprintf("point-%d", i), "allow", nil, time.Millisecond)
	}
	m.TokenRefused("urn:attacker:"+strings.Repeat("x", 100), "invalid_client")
	m.TokenRefused("client_credentials", "made_up_code")
	m.TokenIssued("urn:ietf:params:oauth:grant-type:token-exchange")
	fams := scrape(t, m)
	if n := len(fams["warden_decision_reasons_total"].Metric); n != 257 {
		t.Errorf("%d reason series, want 256 and other", n)
	}
	if got := value(fams, "warden_decision_reasons_total", "reason", metrics.Other); got != 1000-256 {
		t.Errorf("other reasons: %v, want %d", got, 1000-256)
	}
	if n := len(fams["warden_decision_duration_seconds"].Metric); n != 65 {
		t.Errorf("%d enforcement point series, want 64 and other", n)
	}
	if got := value(fams, "warden_token_refusals_total", "grant", metrics.Other, "error", "invalid_client"); got != 1 {
		t.Errorf("refusal of an unknown grant: %v", got)
	}
	if got := value(fams, "warden_token_refusals_total", "grant", "client_credentials", "error", metrics.Other); got != 1 {
		t.Errorf("refusal with an unknown code: %v", got)
	}
	if got := value(fams, "warden_tokens_issued_total", "grant", "token_exchange"); got != 1 {
		t.Errorf("token exchange: %v", got)
	}
}

func TestAuditCommits(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	m.Committed(12, 3*time.Millisecond, nil)
	m.Committed(1, time.Millisecond, nil)
	m.Committed(5, time.Second, context.DeadlineExceeded)
	fams := scrape(t, m)
	if got := fams["warden_audit_commit_entries"].Metric[0].Histogram.GetSampleSum(); got != 13 {
		t.Errorf("entries committed: %v, want 13", got)
	}
	if got := value(fams, "warden_audit_commit_duration_seconds"); got != 2 {
		t.Errorf("commits timed: %v, want 2", got)
	}
	if got := value(fams, "warden_audit_commit_failures_total"); got != 1 {
		t.Errorf("failures: %v, want 1", got)
	}
}

// A figure read at scrape time is absent when it cannot be read, never
// a made-up zero.
func TestReadAtScrape(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	metrics.NoScrapeCache(m)
	var readable bool
	m.Read("queue_entries", "A queue.", "", prometheus.GaugeValue, func(context.Context) []metrics.Sample {
		if !readable {
			return nil
		}
		return []metrics.Sample{{Value: 7}}
	})
	m.Read("incidents_open", "Incidents.", "level", prometheus.GaugeValue, func(context.Context) []metrics.Sample {
		return []metrics.Sample{{Label: "high", Value: 2}, {Label: "low", Value: 0}}
	})
	if got := value(scrape(t, m), "warden_queue_entries"); got != -1 {
		t.Errorf("an unreadable figure was published: %v", got)
	}
	readable = true
	fams := scrape(t, m)
	if got := value(fams, "warden_queue_entries"); got != 7 {
		t.Errorf("queue: %v", got)
	}
	if got := value(fams, "warden_incidents_open", "level", "high"); got != 2 {
		t.Errorf("high incidents: %v", got)
	}
}

// Label values come from policy (reasons) and from requests: one that is
// not valid UTF-8, or not shaped as a name, or long, is "other", never a
// panic (which, in a collector or a gRPC handler, ends the process) and
// never a series that holds a megabyte. Warden's own reasons have a budget
// that policy reasons cannot use up.
func TestLabelValuesAreNames(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	bad := []string{"blocked path /deny\xff", "has spaces", strings.Repeat("x", 1<<20), "new\nline", "\u202eevil", ""}
	m.Decided("gw\xff", "deny", bad, time.Millisecond)
	for i := range 300 {
		m.Decided("gw", "deny", []string{fmt.Sprintf("flood_%d", i)}, time.Millisecond)
	}
	m.Decided("gw", "deny", []string{"warden.token_invalid"}, time.Millisecond)
	m.Read("incidents_open", "Incidents.", "level", prometheus.GaugeValue, func(context.Context) []metrics.Sample {
		return []metrics.Sample{{Label: "high\xff", Value: 1}}
	})
	fams := scrape(t, m)
	if got := value(fams, "warden_decision_reasons_total", "reason", metrics.Other); got != float64(len(bad)+300-256) {
		t.Errorf("other reasons: %v, want %d", got, len(bad)+300-256)
	}
	if got := value(fams, "warden_decision_reasons_total", "reason", "warden.token_invalid"); got != 1 {
		t.Errorf("Warden's own reason after a flood of policy reasons: %v", got)
	}
	if got := value(fams, "warden_decisions_total", "enforcement_point", metrics.Other); got != 1 {
		t.Errorf("a point that is not a name: %v", got)
	}
	if got := value(fams, "warden_incidents_open", "level", metrics.Other); got != 1 {
		t.Errorf("a level read at scrape that is not a name: %v", got)
	}
	for _, f := range fams {
		for _, mt := range f.Metric {
			for _, l := range mt.Label {
				if len(l.GetValue()) > 96 {
					t.Fatalf("a label of %d bytes", len(l.GetValue()))
				}
			}
		}
	}
}

// Components run without metrics: every method of a nil *Metrics is a
// no-op.
func TestNilMetrics(t *testing.T) {
	t.Parallel()
	var m *metrics.Metrics
	m.Decided("gw", "allow", []string{"r"}, time.Millisecond)
	m.TokenIssued("client_credentials")
	m.TokenRefused("client_credentials", "invalid_client")
	m.Committed(1, time.Millisecond, nil)
	m.Read("x", "x", "", prometheus.GaugeValue, func(context.Context) []metrics.Sample { return nil })
}

// BenchmarkDecided is what counting one decision costs (docs/observability.md).
func BenchmarkDecided(b *testing.B) {
	m := metrics.New()
	reasons := []string{"warden.token_invalid"}
	b.ReportAllocs()
	for b.Loop() {
		m.Decided("mcp-gateway", "deny", reasons, time.Millisecond)
	}
}
