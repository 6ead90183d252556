package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/sdk"
)

// scrapeMetrics reads url's /metrics as Prometheus would; header, when
// set, is the Authorization header.
func scrapeMetrics(t *testing.T, url, header string) map[string]*dto.MetricFamily {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/metrics", nil)
	if header != "" {
		req.Header.Set("Authorization", header)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("GET %s/metrics: %d %s", url, res.StatusCode, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("%s/metrics does not parse: %v", url, err)
	}
	return fams
}

// sample is the value of fam's sample with the given labels (pairs of
// name and value), a histogram's count; -1 when there is none.
func sample(fams map[string]*dto.MetricFamily, fam string, labels ...string) float64 {
	f := fams[fam]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
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

// Agents call through a real gateway, one call allowed and one denied,
// and a token request is refused; /metrics on the server and on the
// gateway then say what the audit log says.
func TestMetricsOnServerAndGateway(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	upstream := mcp.NewServer(&mcp.Implementation{Name: "tools", Version: "1"}, nil)
	for _, name := range []string{"hello", "secret"} {
		mcp.AddTool(upstream, &mcp.Tool{Name: name}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: name}}}, nil, nil
		})
	}
	up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return upstream }, nil))
	defer func() { up.CloseClientConnections(); up.Close() }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gwAddr := ln.Addr().String()
	ln.Close()
	gwFile := filepath.Join(t.TempDir(), "gateway.yaml")
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("{}")) }))
	defer api.Close()
	os.WriteFile(gwFile, []byte("listen: "+gwAddr+"\nservers:\n  - {name: tools, url: \""+up.URL+"\", trust: trusted}\n"+
		"http:\n  routes:\n    - {name: api, prefix: /api/, upstream: \""+api.URL+"/\", trust: trusted}\n"), 0o600)
	const scrapeToken = "scrape-token-of-this-test-0123456789abcdef"
	tokenFile := filepath.Join(t.TempDir(), "metrics.token")
	os.WriteFile(tokenFile, []byte(scrapeToken+"\n"), 0o600)
	var gc *app.GatewayConfig
	w := apptest.Start(t, func(c *config.Config) {
		c.Gateway, c.Audit.CheckpointInterval, c.Metrics.TokenFile = gwFile, 50*time.Millisecond, tokenFile
		if gc, err = app.LoadGateway(c); err != nil { // it adds the gateway as a resource
			t.Fatal(err)
		}
	})
	v, _, _, err := w.App.Policies.Push(ctx, "admin:test", &policy.Bundle{Files: map[string][]byte{"policy.rego": []byte(
		// The second rule puts request data in a reason, as a policy may.
		"package warden.authz\nallow if input.resource.id == \"tools/hello\"\n" +
			"deny contains sprintf(\"blocked %s\", [input.resource.id]) if input.resource.kind == \"http.route\"\n")}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.App.Policies.Activate(ctx, "admin:test", v.ID); err != nil {
		t.Fatal(err)
	}
	gw, err := w.App.NewGateway(*gc)
	if err != nil {
		t.Fatal(err)
	}
	gctx, stop := context.WithCancel(ctx)
	defer stop()
	ready, failed := make(chan string, 1), make(chan error, 1)
	go func() { failed <- w.App.RunGateway(gctx, gw, ready) }()
	select {
	case <-ready:
	case err := <-failed:
		t.Fatalf("the gateway did not start: %v", err)
	}
	gwURL := "http://" + gwAddr

	const id = "ai-agent://dev/metered"
	k := w.Register(t, id, "r")
	c, err := sdk.NewClient(w.URL, id, k, sdk.WithResource(gc.MCP.PublicURL))
	if err != nil {
		t.Fatal(err)
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil)
	// A protocol version with sessions, so that the gateway holds one.
	s, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: gc.MCP.PublicURL, HTTPClient: &http.Client{Transport: c.Transport(nil)}, MaxRetries: -1},
		&mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "tools__hello"}); err != nil || r.IsError {
		t.Fatalf("allowed call: %v %v", r, err)
	}
	if _, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "tools__secret"}); err == nil {
		t.Fatal("the denied call went through")
	}
	// A reason holding invalid UTF-8 from the request's path: a denial,
	// counted as "other", not a panic (through ext_authz, whose gRPC
	// server recovers nothing, it ended the process).
	pc, err := sdk.NewClient(w.URL, id, k, sdk.WithResource(gc.HTTP.Resource))
	if err != nil {
		t.Fatal(err)
	}
	hostile, err := (&http.Client{Transport: pc.Transport(nil)}).Get(gwURL + "/api/deny%FF")
	if err != nil {
		t.Fatalf("the proxy dropped the request: %v", err)
	}
	hostile.Body.Close()
	if hostile.StatusCode != http.StatusForbidden {
		t.Fatalf("the hostile path: %d", hostile.StatusCode)
	}
	res, err := http.Post(w.URL+"/oauth/token", "text/plain", strings.NewReader("grant_type=client_credentials"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()

	waitFor(t, func() error { _, err := w.App.Audit.Checkpoint(ctx); return err })
	// What the audit log says of the gateway's decisions.
	before, _ := w.App.Audit.Size(ctx)
	data, err := w.App.Audit.Read(ctx, 0, before)
	if err != nil {
		t.Fatal(err)
	}
	logged := map[string]float64{}
	denyReason := ""
	for _, d := range data {
		e, err := audit.DecodeEntry(d)
		if err != nil {
			t.Fatal(err)
		}
		if e.Kind == audit.KindDecision && e.EnforcementPoint == app.GatewayPEP {
			logged[e.Outcome]++
			if e.Outcome == "deny" && e.Action == "tools/call" {
				denyReason = e.Reasons[0]
			}
		}
	}
	server := scrapeMetrics(t, w.URL, "Bearer "+scrapeToken)
	after, _ := w.App.Audit.Size(ctx)
	gateway := scrapeMetrics(t, gwURL, "Bearer "+scrapeToken)

	for _, fams := range []map[string]*dto.MetricFamily{server, gateway} {
		for _, outcome := range []string{"allow", "deny"} {
			if got := sample(fams, "warden_decisions_total", "enforcement_point", app.GatewayPEP, "outcome", outcome); got != logged[outcome] || got < 1 {
				t.Errorf("gateway decisions %s: %v, the log has %v", outcome, got, logged[outcome])
			}
		}
		if got := sample(fams, "warden_decision_duration_seconds", "enforcement_point", app.GatewayPEP); got != logged["allow"]+logged["deny"] {
			t.Errorf("timed gateway decisions: %v, the log has %v", got, logged["allow"]+logged["deny"])
		}
	}
	for _, c := range []struct {
		name   string
		fam    string
		labels []string
		ok     func(float64) bool
	}{
		{"the deny's reason", "warden_decision_reasons_total", []string{"outcome", "deny", "reason", denyReason}, func(v float64) bool { return v >= 1 }},
		{"the reason built from the path is other", "warden_decision_reasons_total", []string{"outcome", "deny", "reason", "other"}, func(v float64) bool { return v >= 1 }},
		{"tokens issued", "warden_tokens_issued_total", []string{"grant", "client_credentials"}, func(v float64) bool { return v >= 1 }},
		{"the refused token request", "warden_token_refusals_total", []string{"grant", "other", "error", "invalid_request"}, func(v float64) bool { return v == 1 }},
		{"the log's size", "warden_audit_entries", nil, func(v float64) bool { return v >= float64(before) && v <= float64(after) }},
		{"the active version", "warden_policy_active_info", []string{"version", v.ID}, func(v float64) bool { return v == 1 }},
		{"the MCP session held", "warden_gateway_mcp_sessions", nil, func(v float64) bool { return v == 1 }},
		{"the agent's connection", "warden_gateway_connections", nil, func(v float64) bool { return v >= 1 }},
		{"no incident", "warden_incidents_open", []string{"level", "critical"}, func(v float64) bool { return v == 0 }},
		{"the leader", "warden_audit_leading", nil, func(v float64) bool { return v == 1 }},
		{"the runtime's", "go_goroutines", nil, func(v float64) bool { return v > 0 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := sample(server, c.fam, c.labels...); !c.ok(got) {
				t.Errorf("%s%v = %v", c.fam, c.labels, got)
			}
		})
	}
	if entries := server["warden_audit_commit_entries"]; entries == nil || entries.Metric[0].Histogram.GetSampleSum() < logged["allow"]+logged["deny"] {
		t.Errorf("audit commits: %v", entries)
	}
	checkExamples(t, server)
	for _, path := range []string{"/healthz", "/readyz"} {
		res, err := http.Get(gwURL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("gateway %s: %d", path, res.StatusCode)
		}
	}
}

func TestMetricsToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "metrics.token")
	os.WriteFile(file, []byte("scrape-secret-of-this-test-0123456789\n"), 0o600)
	w := apptest.Start(t, func(c *config.Config) { c.Metrics.TokenFile = file })
	for _, c := range []struct {
		name, header string
		want         int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"another token", "Bearer scrape-secret-of-another", http.StatusUnauthorized},
		{"the token in another scheme", "Basic scrape-secret-of-this-test-0123456789", http.StatusUnauthorized},
		{"the token", "Bearer scrape-secret-of-this-test-0123456789", http.StatusOK},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", w.URL+"/metrics", nil)
			if c.header != "" {
				req.Header.Set("Authorization", c.header)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != c.want {
				t.Fatalf("%d, want %d", res.StatusCode, c.want)
			}
			if strings.Contains(string(body), "scrape-secret") {
				t.Error("the answer shows the token")
			}
		})
	}
}

// A token file others can read is refused at start, and metrics that are
// off are not served.
func TestMetricsConfiguration(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "metrics.token")
	os.WriteFile(file, []byte("scrape-secret\n"), 0o644)
	cfg := config.Default()
	cfg.Data = filepath.Join(t.TempDir(), "data")
	cfg.Metrics.TokenFile = file
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if a, err := app.New(context.Background(), cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		if a != nil {
			a.Close()
		}
		t.Fatalf("a token file others can read: %v", err)
	}
	if _, err := os.Stat(cfg.Data); err == nil {
		t.Error("the refused start made the data directory")
	}
	os.Chmod(file, 0o600)
	if a, err := app.New(context.Background(), cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "at least 32") {
		if a != nil {
			a.Close()
		}
		t.Fatalf("a token too short to be a secret: %v", err)
	}

	w := apptest.Start(t, func(c *config.Config) { c.Metrics.Disabled = true })
	res, err := http.Get(w.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("metrics off: /metrics answers %d", res.StatusCode)
	}
}

// The example alert rules and dashboard name only metrics Warden serves,
// so that a renamed metric cannot leave them silently empty.
func checkExamples(t *testing.T, served map[string]*dto.MetricFamily) {
	t.Helper()
	root := filepath.Join("..", "..", "examples")
	rules, err := os.ReadFile(filepath.Join(root, "prometheus", "warden-alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert, Expr string
				Labels      map[string]string
			}
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(rules))
	dec.KnownFields(false)
	if err := dec.Decode(&file); err != nil || len(file.Groups) == 0 {
		t.Fatalf("the alert rules do not parse: %v", err)
	}
	exprs := []string{}
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" {
				t.Errorf("rule %q: alert, expr and a severity are required", r.Alert)
			}
			exprs = append(exprs, r.Expr)
		}
	}
	b, err := os.ReadFile(filepath.Join(root, "grafana", "warden-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil || len(dash.Panels) == 0 {
		t.Fatalf("the dashboard does not parse: %v", err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	name := regexp.MustCompile(`warden_[a-z_]+`)
	for _, e := range exprs {
		for _, n := range name.FindAllString(e, -1) {
			base := n
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if _, ok := served[base]; !ok {
					base = strings.TrimSuffix(base, suffix)
				}
			}
			if _, ok := served[base]; !ok {
				t.Errorf("%s in %q is not a metric Warden serves", n, e)
			}
		}
	}
}

// Agents reach the server's and the gateway's listeners, and the figures
// are every agent's: without a token /metrics is not served there, to
// any address (behind a proxy on the same machine every client seems
// local). metrics.listen serves them on a listener of its own.
func TestMetricsListeners(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	for _, c := range []struct {
		name, remote string
		want         int
	}{{"loopback", "127.0.0.1:40000", http.StatusForbidden}, {"IPv6 loopback", "[::1]:40000", http.StatusForbidden},
		{"another machine", "192.0.2.7:40000", http.StatusForbidden}} {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/metrics", nil)
			req.RemoteAddr = c.remote
			rec := httptest.NewRecorder()
			w.App.Handler.ServeHTTP(rec, req)
			if rec.Code != c.want {
				t.Fatalf("%d, want %d: %s", rec.Code, c.want, rec.Body.String()[:min(200, rec.Body.Len())])
			}
		})
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := ln.Addr().String()
	ln.Close()
	cfg := config.Default()
	cfg.Data = filepath.Join(t.TempDir(), "data")
	cfg.Server.Addr = "127.0.0.1:0"
	cfg.Metrics.Listen = metricsAddr
	// The token holds on the metrics listener too.
	const token = "metrics-listener-token-0123456789abcdef"
	cfg.Metrics.TokenFile = filepath.Join(t.TempDir(), "metrics.token")
	os.WriteFile(cfg.Metrics.TokenFile, []byte(token), 0o600)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := app.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, stop := context.WithCancel(context.Background())
	ready, done := make(chan string, 1), make(chan error, 1)
	go func() { done <- a.Run(ctx, ready) }()
	defer func() { stop(); <-done }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	res, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("the metrics listener without the token: %d", res.StatusCode)
	}
	fams := scrapeMetrics(t, "http://"+metricsAddr, "Bearer "+token)
	if sample(fams, "warden_audit_entries") < 0 {
		t.Error("the metrics listener does not serve Warden's metrics")
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		res, err := http.Get("http://" + metricsAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("%s on the metrics listener: %d", path, res.StatusCode)
		}
	}
}
