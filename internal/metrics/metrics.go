// Package metrics publishes Warden's figures for Prometheus: decisions and
// their latency per enforcement point, tokens, the audit log, the monitor,
// the automatic response and the gateway's sessions.
//
// Counters and histograms are updated where the work happens (a decision
// costs two counter increments and one histogram observation); figures
// other components already keep (queues, the monitor's position, the DPoP
// replay memory) are read only when Prometheus scrapes.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// Namespace prefixes every metric Warden defines.
const Namespace = "warden"

// Other stands for label values past a label's limit, or not shaped as
// a name: a policy that puts request data in its reasons can neither grow
// the series without bound nor make them large.
const Other = "other"

// Label limits: the distinct values a label keeps before the rest count
// as Other, and the longest value kept.
const (
	maxReasons     = 256
	maxOwnReasons  = 64
	maxPoints      = 64
	maxLabelLength = 96
)

// OwnReasonPrefix begins the reasons Warden gives itself (before or after
// the policy); they have a budget of their own, which policy reasons
// cannot use up.
const OwnReasonPrefix = "warden."

// scrapeCache is how long a scrape's figures serve the next scrapes: a
// client that scrapes in a loop costs one gathering a second.
const scrapeCache = time.Second

// Latency buckets, in seconds: from the 50 µs of a memoised decision to
// the seconds of a store that is failing.
var latencyBuckets = []float64{
	50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5,
}

// Metrics is Warden's registry. Its methods are safe for concurrent use,
// and they do nothing on a nil *Metrics, so components may run without
// one.
type Metrics struct {
	reg *prometheus.Registry

	decisions *prometheus.CounterVec
	reasons   *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	tokens    *prometheus.CounterVec
	refusals  *prometheus.CounterVec
	commit    prometheus.Histogram
	batch     prometheus.Histogram
	failed    prometheus.Counter

	points, reasonNames, ownReasons bounded

	cacheFor time.Duration
	cache    struct {
		sync.Mutex
		at   time.Time
		fams []*dto.MetricFamily
		err  error
	}
}

// New makes a registry with Warden's metrics, the Go runtime's and the
// process's.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), points: bounded{max: maxPoints}, reasonNames: bounded{max: maxReasons},
		ownReasons: bounded{max: maxOwnReasons}, cacheFor: scrapeCache}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "decisions_total",
		Help: "Decisions made, by enforcement point and outcome (allow, deny, pending)."}, []string{"enforcement_point", "outcome"})
	m.reasons = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "decision_reasons_total",
		Help: "Reasons given with decisions, by outcome and reason; a decision with two reasons counts in both."}, []string{"outcome", "reason"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "decision_duration_seconds",
		Help:    "Time from a decision request's arrival to its durable audit entry, by enforcement point.",
		Buckets: latencyBuckets}, []string{"enforcement_point"})
	m.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "tokens_issued_total",
		Help: "Access tokens issued by the token endpoint, by grant."}, []string{"grant"})
	m.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "token_refusals_total",
		Help: "Token endpoint requests refused, by grant and OAuth error code."}, []string{"grant", "error"})
	m.commit = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "audit_commit_duration_seconds",
		Help: "Time of one durable write of a batch of audit entries (group commit).", Buckets: latencyBuckets})
	m.batch = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "audit_commit_entries",
		Help: "Entries per durable write of the audit log.", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}})
	m.failed = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "audit_commit_failures_total",
		Help: "Durable writes of audit entries that failed; their entries, and so their actions, were refused."})
	m.reg.MustRegister(m.decisions, m.reasons, m.latency, m.tokens, m.refusals, m.commit, m.batch, m.failed)
	return m
}

// Handler serves the registry in Prometheus' text format (or OpenMetrics,
// when the scraper asks for it): two scrapes at a time, each second's
// figures gathered once.
func (m *Metrics) Handler(log *slog.Logger) http.Handler {
	opts := promhttp.HandlerOpts{EnableOpenMetrics: true, Timeout: 10 * time.Second, MaxRequestsInFlight: 2}
	if log != nil {
		opts.ErrorLog = slogLogger{log}
	}
	return promhttp.HandlerFor(prometheus.GathererFunc(m.gather), opts)
}

// gather is the registry's Gather, kept for scrapeCache.
func (m *Metrics) gather() ([]*dto.MetricFamily, error) {
	c := &m.cache
	c.Lock()
	defer c.Unlock()
	if now := time.Now(); now.Sub(c.at) >= m.cacheFor || now.Before(c.at) {
		c.fams, c.err = m.reg.Gather()
		c.at = now
	}
	return c.fams, c.err
}

// Registry is the registry itself, for tests and for collectors of other
// packages.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Decided counts one decision made at enforcement point pep, with its
// reasons and the time it took, its durable entry included.
func (m *Metrics) Decided(pep, outcome string, reasons []string, took time.Duration) {
	if m == nil {
		return
	}
	if pep == "" {
		pep = "api"
	}
	pep = m.points.value(pep)
	outcome = name(outcome)
	m.decisions.WithLabelValues(pep, outcome).Inc()
	for _, r := range reasons {
		if strings.HasPrefix(r, OwnReasonPrefix) {
			r = m.ownReasons.value(r)
		} else {
			r = m.reasonNames.value(r)
		}
		m.reasons.WithLabelValues(outcome, r).Inc()
	}
	m.latency.WithLabelValues(pep).Observe(took.Seconds())
}

// TokenIssued counts a token issued for grant.
func (m *Metrics) TokenIssued(grant string) {
	if m == nil {
		return
	}
	m.tokens.WithLabelValues(grantLabel(grant)).Inc()
}

// TokenRefused counts a token request refused with the OAuth error code.
func (m *Metrics) TokenRefused(grant, code string) {
	if m == nil {
		return
	}
	m.refusals.WithLabelValues(grantLabel(grant), errorLabel(code)).Inc()
}

// Committed observes one durable write of n audit entries; err is the
// write's failure.
func (m *Metrics) Committed(n int, took time.Duration, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.failed.Inc()
		return
	}
	m.commit.Observe(took.Seconds())
	m.batch.Observe(float64(n))
}

// Sample is one value of a metric read at scrape time: the value of its
// label (empty for a metric without one) and the figure.
type Sample struct {
	Label string
	Value float64
}

// Read publishes a metric whose samples f reads at each scrape, within
// two seconds (a store query, say): label names its one label, or is
// empty for none; kind is prometheus.GaugeValue or CounterValue. f returns
// no samples when it cannot read them, and the metric is then absent from
// that scrape rather than wrong.
func (m *Metrics) Read(name, help, label string, kind prometheus.ValueType, f func(ctx context.Context) []Sample) {
	if m == nil {
		return
	}
	var labels []string
	if label != "" {
		labels = []string{label}
	}
	m.reg.MustRegister(&readCollector{desc: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil),
		labelled: label != "", kind: kind, f: f})
}

// readCollector reads a metric's samples at scrape time.
type readCollector struct {
	desc     *prometheus.Desc
	labelled bool
	kind     prometheus.ValueType
	f        func(ctx context.Context) []Sample
}

func (c *readCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *readCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range c.f(ctx) {
		var labels []string
		if c.labelled {
			labels = []string{name(s.Label)}
		}
		// Never Must: a collector's panic would end the process.
		if mt, err := prometheus.NewConstMetric(c.desc, c.kind, s.Value, labels...); err == nil {
			ch <- mt
		}
	}
}

// bounded keeps the first max distinct values of a label; later ones are
// Other.
type bounded struct {
	max  int
	seen sync.Map // string -> struct{}
	n    atomic.Int64
	mu   sync.Mutex
}

func (b *bounded) value(s string) string {
	if s = name(s); s == Other {
		return s
	}
	if _, ok := b.seen.Load(s); ok {
		return s
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.seen.Load(s); ok {
		return s
	}
	if b.n.Load() >= int64(b.max) {
		return Other
	}
	b.seen.Store(s, struct{}{})
	b.n.Add(1)
	return s
}

// name is s when it is shaped as a name (at most maxLabelLength bytes of
// letters, digits and _ . : / -), else Other: a label value must be valid
// UTF-8 (the client panics on one that is not), and should be small.
func name(s string) string {
	if s == "" || len(s) > maxLabelLength {
		return Other
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '.', c == ':', c == '/', c == '-':
		default:
			return Other
		}
	}
	return s
}

// grantLabel names the grant of a token request: the request names it,
// so anything but the two grants served is Other.
func grantLabel(g string) string {
	switch g {
	case "client_credentials":
		return g
	case "urn:ietf:params:oauth:grant-type:token-exchange":
		return "token_exchange"
	}
	return Other
}

// errorLabel keeps the OAuth error codes the endpoint answers with.
func errorLabel(code string) string {
	switch code {
	case "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
		"invalid_scope", "invalid_target", "invalid_dpop_proof", "slow_down", "temporarily_unavailable", "server_error":
		return code
	}
	return Other
}

// slogLogger carries promhttp's errors to the log.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Println(v ...any) { s.l.Warn("metrics", "err", v) }
