// Package server is Warden's HTTP API: the OAuth token endpoint and its
// metadata, the decision endpoints, the admin API (agents, keys, policies,
// enforcement points, the audit log) and health checks. Handlers are thin:
// they decode, call the packages that do the work, and encode.
package server

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/humans"
	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
)

// Config configures the API.
type Config struct {
	// Issuer is the server's public base URL.
	Issuer string
	// MaxBodyBytes caps request bodies.
	MaxBodyBytes int64
	Logger       *slog.Logger
	// Console serves the web console at /ui/.
	Console bool
}

// Deps are the components the API serves.
type Deps struct {
	Registry *identity.Registry
	Issuer   *identity.TokenIssuer
	Verifier *identity.Verifier
	Keys     *identity.Keyring
	View     *identity.TrustView
	Store    interface {
		store.EventStore
		Ping(ctx context.Context) error
	}
	Admin *AdminAuth
	Audit *audit.Log
	// Relay copies admin events into the audit log; admin changes sync it
	// before answering.
	Relay *audit.EventRelay
	// Policies, Decide and EnforcementPoints are the decision point.
	Policies          *policy.Registry
	Decide            *decide.Pipeline
	EnforcementPoints *decide.EnforcementPoints
	// Taints are the agents' taints, for operators to read and clear.
	Taints Taints
	// Monitor and Incidents, when set, answer agents' risk and the
	// automatic response's incidents.
	Monitor   Monitor
	Incidents store.IncidentStore
	// AlertsDropped, when set, counts the alerts the responder's full
	// queue dropped.
	AlertsDropped func() int64
	// Approvals and ApprovalStore, when set, take votes on approval
	// requests and list them.
	Approvals     Approvals
	ApprovalStore store.ApprovalStore
	// Humans, when set, signs people in (OIDC) and answers their sessions.
	Humans *humans.Service
	// Access, when set, rotates and disables the bootstrap token.
	Access Access
	// Grants and GrantStore, when set, give, list and end task grants.
	Grants     Grants
	GrantStore store.GrantStore
	// Metrics, when set, counts the token endpoint's answers, and
	// MetricsHandler serves the metrics at /metrics.
	Metrics        TokenMetrics
	MetricsHandler http.Handler
}

// TokenMetrics counts the token endpoint's answers.
type TokenMetrics interface {
	TokenIssued(grant string)
	TokenRefused(grant, code string)
}

// Server is the HTTP API.
type Server struct {
	cfg Config
	d   Deps
	log *slog.Logger
	mux *http.ServeMux
}

var _ http.Handler = (*Server)(nil)

// New builds the API.
func New(cfg Config, d Deps) *Server {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	s := &Server{cfg: cfg, d: d, log: log, mux: http.NewServeMux()}
	s.routes()
	return s
}

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /healthz", s.healthz)
	m.HandleFunc("GET /readyz", s.readyz)
	if s.d.MetricsHandler != nil {
		m.Handle("GET /metrics", s.d.MetricsHandler)
	}
	if s.cfg.Console && s.d.Registry != nil && s.d.Audit != nil && s.d.Policies != nil {
		s.routeConsole(m)
	}

	m.HandleFunc("POST /oauth/token", s.token)
	m.HandleFunc("POST /oauth/revoke", s.revoke)
	m.HandleFunc("GET /.well-known/jwks.json", s.jwks)
	m.HandleFunc("GET /.well-known/oauth-authorization-server", s.metadata)

	m.Handle("POST /v1/agents", s.admin(humans.AgentsRegister, s.registerAgent))
	m.Handle("GET /v1/agents", s.admin(humans.AgentsRead, s.listAgents))
	m.Handle("GET /v1/agents/{id}", s.admin(humans.AgentsRead, s.getAgent))
	m.Handle("PATCH /v1/agents/{id}", s.admin(humans.AgentsRegister, s.updateAgent))
	m.Handle("DELETE /v1/agents/{id}", s.admin(humans.AgentsRegister, s.agentAction(s.d.Registry.Delete)))
	m.Handle("POST /v1/agents/{id}/disable", s.admin(humans.AgentsWrite, s.setStatus(store.StatusDisabled)))
	m.Handle("POST /v1/agents/{id}/enable", s.admin(humans.AgentsWrite, s.setStatus(store.StatusActive)))
	m.Handle("POST /v1/agents/{id}/quarantine", s.admin(humans.AgentsWrite, s.setStatus(store.StatusQuarantined)))
	m.Handle("POST /v1/agents/{id}/restrict", s.admin(humans.AgentsWrite, s.setStatus(store.StatusRestricted)))
	m.Handle("POST /v1/agents/{id}/revoke", s.admin(humans.AgentsWrite, s.agentAction(s.d.Registry.RevokeTokens)))
	m.Handle("POST /v1/agents/{id}/keys", s.admin(humans.AgentsRegister, s.rotateAgentKey))
	m.Handle("POST /v1/tokens/revoke", s.admin(humans.AgentsWrite, s.revokeToken))
	m.Handle("GET /v1/keys", s.admin(humans.KeysRead, s.listKeys))
	m.Handle("POST /v1/keys/rotate", s.admin(humans.KeysRotate, s.rotateKeys))
	m.Handle("GET /v1/events", s.admin(humans.EventsRead, s.listEvents))
	if s.d.Taints != nil {
		m.Handle("GET /v1/agents/{id}/taints", s.admin(humans.TaintsRead, s.listTaints))
		m.Handle("POST /v1/agents/{id}/taints/clear", s.admin(humans.TaintsWrite, s.clearTaints))
	}

	if s.d.Monitor != nil {
		m.Handle("GET /v1/agents/{id}/risk", s.admin(humans.MonitorRead, s.agentRisk))
		m.Handle("GET /v1/monitor", s.admin(humans.MonitorRead, s.monitorStatus))
		m.Handle("POST /v1/monitor/rebuild", s.admin(humans.MonitorWrite, s.rebuildMonitor))
	}
	if s.d.Incidents != nil {
		m.Handle("GET /v1/incidents", s.admin(humans.IncidentsRead, s.listIncidents))
		m.Handle("GET /v1/incidents/{id}", s.admin(humans.IncidentsRead, s.getIncident))
		m.Handle("POST /v1/incidents/{id}/ack", s.admin(humans.IncidentsWrite, s.setIncidentStatus(store.IncidentAcknowledged)))
		m.Handle("POST /v1/incidents/{id}/resolve", s.admin(humans.IncidentsWrite, s.setIncidentStatus(store.IncidentResolved)))
	}

	m.HandleFunc("GET /v1/auth/config", s.authConfig)
	m.HandleFunc("POST /v1/auth/login", s.login)
	m.Handle("POST /v1/auth/logout", s.admin(humans.SessionPermissions, s.logout))
	m.Handle("GET /v1/auth/whoami", s.admin(humans.SessionPermissions, s.whoami))
	m.Handle("GET /v1/access", s.admin(humans.AdministerAccess, s.access))
	if s.d.Access != nil {
		m.Handle("POST /v1/access/bootstrap/rotate", s.admin(humans.AdministerAccess, s.rotateBootstrap))
		m.Handle("POST /v1/access/bootstrap/disable", s.admin(humans.AdministerAccess, s.disableBootstrap))
	}

	if s.d.Grants != nil && s.d.GrantStore != nil {
		m.HandleFunc("POST /v1/grants", s.askGrant)
		m.Handle("GET /v1/grants", s.admin(humans.GrantsRead, s.listGrants))
		m.Handle("GET /v1/grants/{id}", s.admin(humans.GrantsRead, s.getGrant))
		m.Handle("POST /v1/grants/{id}/revoke", s.admin(humans.GrantsWrite, s.revokeGrant))
		m.HandleFunc("POST /v1/tasks/{task}/complete", s.completeTask)
	}

	if s.d.Approvals != nil && s.d.ApprovalStore != nil {
		m.Handle("GET /v1/approvals", s.admin(humans.ApprovalsRead, s.listApprovals))
		m.Handle("GET /v1/approvals/{id}", s.admin(humans.ApprovalsRead, s.getApproval))
		m.Handle("POST /v1/approvals/{id}/approve", s.vote(true))
		m.Handle("POST /v1/approvals/{id}/reject", s.vote(false))
	}

	if s.d.Decide != nil {
		m.Handle("POST /v1/decide", s.pep(s.decideOne))
		m.Handle("POST /v1/decide/batch", s.pep(s.decideBatch))
		m.Handle("POST /v1/decide/may-allow", s.pep(s.mayAllow))
		m.Handle("POST /v1/enforcement-points", s.admin(humans.EnforcementWrite, s.registerEnforcementPoint))
		m.Handle("GET /v1/enforcement-points", s.admin(humans.EnforcementRead, s.listEnforcementPoints))
		m.Handle("POST /v1/enforcement-points/{name}/revoke", s.admin(humans.EnforcementWrite, s.revokeEnforcementPoint))
	}
	if s.d.Policies != nil {
		m.Handle("POST /v1/policies", s.admin(humans.PoliciesPush, s.pushPolicy))
		m.Handle("GET /v1/policies", s.admin(humans.PoliciesRead, s.listPolicies))
		m.Handle("GET /v1/policies/activations", s.admin(humans.PoliciesRead, s.listActivations))
		m.Handle("GET /v1/policies/shadow", s.admin(humans.PoliciesRead, s.getShadowPolicy))
		m.Handle("PUT /v1/policies/shadow", s.admin(humans.PoliciesPush, s.setShadowPolicy))
		m.Handle("DELETE /v1/policies/shadow", s.admin(humans.PoliciesPush, s.setShadowPolicy))
		m.Handle("POST /v1/policies/rollback", s.admin(humans.PoliciesActivate, s.rollbackPolicy))
		m.Handle("GET /v1/policies/{version}", s.admin(humans.PoliciesRead, s.getPolicy))
		m.Handle("POST /v1/policies/{version}/activate", s.admin(humans.PoliciesActivate, s.activatePolicy))
	}

	m.HandleFunc("GET /v1/audit/checkpoint", s.auditCheckpoint)
	m.HandleFunc("GET /v1/audit/checkpoint/key", s.auditKey)
	m.Handle("GET /v1/audit/checkpoints", s.admin(humans.AuditRead, s.auditCheckpoints))
	m.Handle("GET /v1/audit/entries", s.admin(humans.AuditRead, s.auditEntries))
	m.Handle("GET /v1/audit/export", s.admin(humans.AuditExport, s.auditExport))
	m.Handle("GET /v1/audit/proof/inclusion", s.admin(humans.AuditRead, s.auditInclusion))
	m.Handle("GET /v1/audit/lineage", s.admin(humans.AuditRead, s.auditLineage))
	m.Handle("GET /v1/audit/proof/consistency", s.admin(humans.AuditRead, s.auditConsistency))
}

// ServeHTTP implements http.Handler: common headers, body limit, panic
// recovery and one access log line per request (never with credentials).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	h := sw.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	limit := s.cfg.MaxBodyBytes
	if r.Method == http.MethodPost && r.URL.Path == "/v1/policies" && s.d.Policies != nil {
		limit = max(limit, maxBundleBody(s.d.Policies.Limits()))
	}
	r.Body = http.MaxBytesReader(sw, r.Body, limit)
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p) // an answer cut off on purpose
			}
			s.log.Error("panic in handler", "path", r.URL.Path, "panic", p)
			if !sw.wrote {
				writeError(sw, http.StatusInternalServerError, "internal", "internal error")
			}
		}
		s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", sw.status,
			"duration", time.Since(start), "remote", r.RemoteAddr)
	}()
	s.mux.ServeHTTP(sw, r)
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

// Unwrap lets http.ResponseController reach the connection (deadlines, flushing).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 only when the store answers and the verifier's view of
// revocations is current: a replica that cannot tell revoked tokens from
// good ones should not receive traffic.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{"store": "ok", "revocation_state": "ok"}
	status := http.StatusOK
	if err := s.d.Store.Ping(ctx); err != nil {
		checks["store"], status = "unavailable", http.StatusServiceUnavailable
		s.log.Warn("readyz: store", "err", err)
	}
	if err := s.d.View.Fresh(); err != nil {
		checks["revocation_state"], status = "stale", http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{"ready": status == http.StatusOK, "checks": checks})
}
