package app

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/metrics"
	"github.com/warden-run/warden/internal/store"
)

// maxOpenIncidents bounds the incidents one scrape reads.
const maxOpenIncidents = 10_000

// newMetrics makes the registry, or nil when metrics are off.
func newMetrics(cfg config.Metrics) *metrics.Metrics {
	if cfg.Disabled {
		return nil
	}
	return metrics.New()
}

// minMetricsToken is the shortest metrics token accepted.
const minMetricsToken = 32

// readMetricsToken reads metrics.token_file, before anything is made: a
// file others can read, or a token too short to be a secret, is refused.
func readMetricsToken(cfg config.Metrics) (string, error) {
	if cfg.Disabled || cfg.TokenFile == "" {
		return "", nil
	}
	token, err := readSecret(cfg.TokenFile)
	if err != nil {
		return "", fmt.Errorf("metrics.token_file: %w", err)
	}
	if len(token) < minMetricsToken {
		return "", fmt.Errorf("metrics.token_file: %d characters; a token needs at least %d (openssl rand -hex 32)", len(token), minMetricsToken)
	}
	return token, nil
}

// metricsHandler serves /metrics on the listeners agents reach (the
// server's and the gateway's): the figures are every agent's, so only to
// a scraper with the metrics token. Without one they are refused there:
// a client's address proves nothing behind a proxy on the same machine,
// which every client then seems to come from. token is also asked on
// metrics.listen when set.
func (a *App) metricsHandler(token string) http.Handler {
	h := a.Metrics.Handler(a.log)
	if token == "" {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "/metrics is not served on this listener without a token: set metrics.token_file for scrapers with a token, or metrics.listen for a listener of its own", http.StatusForbidden)
		})
	}
	return withToken(token, h)
}

// withToken serves h to requests bearing token.
func withToken(token string, h http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="warden metrics"`)
			http.Error(w, "a bearer token is required (metrics.token_file)", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// serveMetrics serves /metrics, /healthz and /readyz on metrics.listen,
// when set, until ctx ends: for a scraper on a network agents do not
// reach, with the metrics token when there is one, else without
// credentials. The first caller starts it; its error (the address
// taken, say) is every caller's.
func (a *App) serveMetrics(ctx context.Context) error {
	a.metricsOnce.Do(func() {
		addr := a.cfg.Metrics.Listen
		if addr == "" || a.Metrics == nil {
			return
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			a.metricsErr = fmt.Errorf("metrics.listen: %w", err)
			return
		}
		mux := http.NewServeMux()
		var h http.Handler = a.Metrics.Handler(a.log)
		if a.metricsToken != "" {
			h = withToken(a.metricsToken, h)
		}
		mux.Handle("GET /metrics", h)
		mux.Handle("GET /healthz", a.Handler)
		mux.Handle("GET /readyz", a.Handler)
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
			ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}
		a.log.Info("metrics serving", "addr", ln.Addr().String())
		go srv.Serve(ln)
		go func() {
			<-ctx.Done()
			srv.Close()
		}()
	})
	return a.metricsErr
}

// publish registers the figures the components keep, read at each
// scrape.
func (a *App) publish() {
	m := a.Metrics
	if m == nil {
		return
	}
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	one := func(v float64) []metrics.Sample { return []metrics.Sample{{Value: v}} }
	size := func(ctx context.Context) (int64, bool) {
		n, err := a.Audit.Size(ctx)
		return n, err == nil
	}

	m.Read("audit_entries", "Entries in the audit log.", "", gauge, func(ctx context.Context) []metrics.Sample {
		if n, ok := size(ctx); ok {
			return one(float64(n))
		}
		return nil
	})
	m.Read("audit_queue_entries", "Audit entries waiting for the group commit.", "", gauge, func(context.Context) []metrics.Sample {
		return one(float64(a.Audit.Queued()))
	})
	m.Read("audit_leading", "1 when this replica integrates the Merkle tree and signs checkpoints.", "", gauge, func(context.Context) []metrics.Sample {
		return one(b2f(a.Audit.Leading()))
	})
	m.Read("audit_checkpoint_size", "Entries covered by the latest signed checkpoint.", "", gauge, func(ctx context.Context) []metrics.Sample {
		if cp, err := a.Audit.Checkpoint(ctx); err == nil {
			return one(float64(cp.Size))
		}
		return nil
	})
	m.Read("audit_checkpoint_age_seconds", "Time since the latest signed checkpoint.", "", gauge, func(ctx context.Context) []metrics.Sample {
		if cp, err := a.Audit.Checkpoint(ctx); err == nil {
			return one(time.Since(cp.Time).Seconds())
		}
		return nil
	})

	m.Read("shadow_evaluations_total", "Decisions evaluated again by the policy version in shadow.", "", counter, func(context.Context) []metrics.Sample {
		return one(float64(a.Decide.ShadowStats().Evaluated))
	})
	m.Read("shadow_disagreements_total", "Shadow evaluations whose outcome differed from the active version's.", "", counter, func(context.Context) []metrics.Sample {
		return one(float64(a.Decide.ShadowStats().Disagreements))
	})
	m.Read("shadow_dropped_total", "Shadow evaluations dropped because their queue was full.", "", counter, func(context.Context) []metrics.Sample {
		return one(float64(a.Decide.ShadowStats().Dropped))
	})
	m.Read("policy_active_info", "The active policy version (1), by version.", "version", gauge, func(context.Context) []metrics.Sample {
		if live := a.Policies.Live(); live.Active != nil {
			return []metrics.Sample{{Label: live.Active.Version(), Value: 1}}
		}
		return nil
	})
	m.Read("policy_memo_lookups_total", "Evaluations of the active policy version asked of its decision memo, by result (hit, miss); they restart with each activation.", "result", counter, func(context.Context) []metrics.Sample {
		live := a.Policies.Live()
		if live.Active == nil {
			return nil
		}
		hits, misses := live.Active.MemoStats()
		return []metrics.Sample{{Label: "hit", Value: float64(hits)}, {Label: "miss", Value: float64(misses)}}
	})

	m.Read("dpop_proofs_remembered", "DPoP proofs remembered against replay.", "", gauge, func(context.Context) []metrics.Sample {
		return one(float64(a.Verifier.DPoPStats().Remembered))
	})
	m.Read("dpop_replay_capacity", "DPoP proofs the replay memory can hold.", "", gauge, func(context.Context) []metrics.Sample {
		return one(float64(a.Verifier.DPoPStats().Capacity))
	})
	m.Read("dpop_refusals_total", "DPoP proofs refused for a limit, by limit (replay_full: the replay memory; rate: proofs_per_key).", "limit", counter, func(context.Context) []metrics.Sample {
		st := a.Verifier.DPoPStats()
		return []metrics.Sample{{Label: "replay_full", Value: float64(st.RefusedFull)}, {Label: "rate", Value: float64(st.RefusedRate)}}
	})

	m.Read("taints_held", "Taints the agents hold.", "", gauge, func(context.Context) []metrics.Sample {
		n, _ := a.Taints.Count()
		return one(float64(n))
	})
	m.Read("tainted_agents", "Agents holding at least one taint.", "", gauge, func(context.Context) []metrics.Sample {
		_, n := a.Taints.Count()
		return one(float64(n))
	})

	m.Read("incidents_open", "Incidents not resolved, by the highest risk level each reached.", "level", gauge, func(ctx context.Context) []metrics.Sample {
		incs, err := a.Store.Incidents(ctx, store.IncidentFilter{Open: true, Limit: maxOpenIncidents})
		if err != nil {
			return nil
		}
		by := map[string]float64{"low": 0, "medium": 0, "high": 0, "critical": 0}
		for _, inc := range incs {
			by[inc.Level]++
		}
		out := make([]metrics.Sample, 0, len(by))
		for level, n := range by {
			out = append(out, metrics.Sample{Label: level, Value: n})
		}
		return out
	})
	m.Read("response_alerts_dropped_total", "Alerts the automatic response's full queue dropped.", "", counter, func(context.Context) []metrics.Sample {
		return one(float64(a.Responder.Dropped()))
	})
	if a.Monitor != nil {
		m.Read("monitor_position", "Index of the last audit entry the behavioural monitor has read.", "", gauge, func(context.Context) []metrics.Sample {
			return one(float64(a.Monitor.Stats().Position))
		})
		m.Read("monitor_lag_entries", "Audit entries the behavioural monitor has not read yet.", "", gauge, func(ctx context.Context) []metrics.Sample {
			n, ok := size(ctx)
			if !ok {
				return nil
			}
			return one(float64(max(0, n-1-a.Monitor.Stats().Position)))
		})
		m.Read("monitor_skipped_total", "Audit entries the behavioural monitor could not decode.", "", counter, func(context.Context) []metrics.Sample {
			return one(float64(a.Monitor.Stats().Skipped))
		})
	}
}

// publishGateway registers g's figures; an App publishes one gateway's.
func (a *App) publishGateway(g *Gateway) {
	m := a.Metrics
	if m == nil || a.gatewayPublished {
		return
	}
	a.gatewayPublished = true
	gauge := prometheus.GaugeValue
	m.Read("gateway_connections", "Connections open to the gateway's listener.", "", gauge, func(context.Context) []metrics.Sample {
		return []metrics.Sample{{Value: float64(g.conns.Open())}}
	})
	if g.MCP != nil {
		m.Read("gateway_mcp_sessions", "MCP sessions open at the gateway (protocol versions with sessions).", "", gauge, func(context.Context) []metrics.Sample {
			return []metrics.Sample{{Value: float64(g.MCP.Sessions())}}
		})
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
