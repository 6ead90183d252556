// Package app wires Warden together: a typed Config becomes a store, the
// identity components, the audit log, the decision point and the HTTP API,
// with one Run and one Close.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/warden-run/warden/internal/approvals"
	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/filelog"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/grants"
	"github.com/warden-run/warden/internal/humans"
	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/metrics"
	"github.com/warden-run/warden/internal/monitor"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/respond"
	"github.com/warden-run/warden/internal/server"
	"github.com/warden-run/warden/internal/store"
	"github.com/warden-run/warden/internal/store/postgres"
	"github.com/warden-run/warden/internal/store/sqlite"
	"github.com/warden-run/warden/internal/taint"
	"github.com/warden-run/warden/internal/tracing"
)

// App is a running control plane.
type App struct {
	cfg      config.Config
	log      *slog.Logger
	Store    store.Store
	Keys     *identity.Keyring
	View     *identity.TrustView
	Registry *identity.Registry
	Issuer   *identity.TokenIssuer
	Verifier *identity.Verifier
	Audit    *audit.Log
	Relay    *audit.EventRelay
	Policies *policy.Registry
	Decide   *decide.Pipeline
	// Taints are the agents' taints, shared with every replica.
	Taints *taint.Registry
	// Monitor scores each agent's behaviour and Responder acts on its
	// alerts; both nil when monitoring is off.
	Monitor   *monitor.Monitor
	Responder *respond.Responder
	// Approvals holds the actions policy asks approvals for; Grants keeps
	// the task grants.
	Approvals *approvals.Service
	Grants    *grants.Service
	// EnforcementPoints are the registered enforcement points and their credentials.
	EnforcementPoints *decide.EnforcementPoints
	Handler           http.Handler
	// AdminTokenFile is where the bootstrap admin token was written, when this
	// start wrote it.
	AdminTokenFile string
	// Metrics are served at /metrics; nil when metrics are off.
	Metrics *metrics.Metrics

	gatewayPublished bool
	metricsToken     string
	stopTracing      func(context.Context) error
	metricsOnce      sync.Once
	metricsErr       error

	auditBackend audit.Backend
	stop         context.CancelFunc
	// background counts the goroutines New started: Close returns once
	// they have ended, so nothing writes to the data directory after it.
	background sync.WaitGroup
}

// spawn runs f in a goroutine that Close waits for.
func (a *App) spawn(f func()) { a.background.Go(f) }

// New builds every component from cfg. cfg must have passed Validate.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*App, error) {
	bg, stop := context.WithCancel(context.Background())
	a := &App{cfg: cfg, log: log, stop: stop, Metrics: newMetrics(cfg.Metrics)}
	ok := false
	defer func() {
		if !ok {
			a.Close()
		}
	}()
	var err error
	if a.metricsToken, err = readMetricsToken(cfg.Metrics); err != nil {
		return nil, err
	}
	if a.stopTracing, err = tracing.Start(cfg.Tracing); err != nil {
		return nil, err
	}
	var pool *pgxpool.Pool // the PostgreSQL store's connections, which the audit log shares
	if a.Store, pool, err = openStore(ctx, cfg, log); err != nil {
		return nil, err
	}
	mk, created, err := masterKey(cfg.Identity)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("master key created; back it up: without it the issuer keys cannot be read", "path", cfg.Identity.MasterKeyFile)
	}
	if err := identity.BindMasterKey(ctx, a.Store, mk); err != nil {
		return nil, err
	}
	signer, err := checkpointSigner(ctx, a.Store, mk, cfg.Audit.Origin, log)
	if err != nil {
		return nil, err
	}
	// Refuse settings that differ from the other replicas', naming them
	// all; the log's name can never change, so an update cannot take it.
	originErr := checkOrigin(signer, cfg.Audit.Origin)
	if cfg.UpdateSharedSettings && originErr != nil {
		return nil, originErr
	}
	if err := identity.BindSharedSettings(ctx, a.Store, sharedSettings(cfg), cfg.UpdateSharedSettings, time.Now()); err != nil {
		return nil, err
	}
	if originErr != nil {
		return nil, originErr
	}
	id := cfg.Identity
	a.Keys, err = identity.OpenKeyring(bg, identity.KeyringConfig{
		RetireAfter: identity.MaxTokenLifetime + id.ClockSkew, ClockSkew: id.ClockSkew, Logger: log,
	}, a.Store, mk)
	if err != nil {
		return nil, err
	}
	a.View, err = identity.OpenTrustView(bg, identity.TrustViewConfig{MaxStaleness: id.MaxStaleness, Logger: log}, a.Store)
	if err != nil {
		return nil, err
	}
	domains := make(map[string]identity.DomainPolicy, len(id.TrustDomains))
	for name, td := range id.TrustDomains {
		domains[name] = identity.DomainPolicy{RequireDPoP: td.RequireDPoP}
	}
	if a.Registry, err = identity.NewRegistry(identity.RegistryConfig{TrustDomains: domains, KeyGrace: id.KeyGrace, Logger: log}, a.Store, a.View); err != nil {
		return nil, err
	}
	audiences := append([]string{id.Audience}, id.Resources...)
	if a.Verifier, err = identity.NewVerifier(identity.VerifierConfig{Issuer: id.Issuer, Audiences: audiences,
		TrustDomains: domains, ClockSkew: id.ClockSkew, DPoP: identity.DPoPConfig{ClockSkew: id.ClockSkew,
			ReplayCacheSize: id.DPoP.ReplayCapacity, ProofsPerKey: id.DPoP.ProofsPerKey.Bucket(), Logger: log}}, a.View); err != nil {
		return nil, err
	}
	admin, written, err := bootstrapAdmin(ctx, a.Store, cfg.Data, cfg.AdminToken, log)
	if err != nil {
		return nil, err
	}
	a.AdminTokenFile = written

	var notify string
	if pg, ok := a.Store.(interface{ Channel() string }); ok {
		notify = pg.Channel()
	}
	if a.auditBackend, err = auditBackend(ctx, cfg, pool, notify, log); err != nil {
		return nil, err
	}
	auditCfg := audit.Config{Mode: audit.Mode(cfg.Audit.Mode), AsyncBuffer: cfg.Audit.AsyncBuffer,
		CheckpointEvery: cfg.Audit.CheckpointEvery, CheckpointInterval: cfg.Audit.CheckpointInterval, Logger: log}
	if a.Metrics != nil {
		auditCfg.Observer = a.Metrics
	}
	if a.Audit, err = audit.Open(auditCfg, a.auditBackend, signer); err != nil {
		return nil, err
	}
	te := id.TokenEndpoint
	if a.Issuer, err = identity.NewTokenIssuer(identity.IssuerConfig{Issuer: id.Issuer, Audience: id.Audience, Resources: id.Resources,
		TokenTTL: id.TokenTTL, MaxTokenTTL: id.MaxTokenTTL, ClockSkew: id.ClockSkew, TrustDomains: domains, Logger: log,
		Limits: identity.TokenEndpointLimits{FailuresPerSource: te.FailuresPerSource.Bucket(), FailuresPerAgent: te.FailuresPerAgent.Bucket(),
			RequestsPerAgent: te.RequestsPerAgent.Bucket(),
			RefusalEntries:   te.RefusalEntries.Bucket()}},
		a.Store, a.Keys, a.Verifier, a.Audit); err != nil {
		return nil, err
	}
	a.Relay = audit.NewEventRelay(a.Audit, adminEvents{a.Store}, log)
	var people *humans.Service
	if cfg.Humans.Enabled() {
		if people, err = humans.New(cfg.Humans, a.Store, log, nil); err != nil {
			return nil, err
		}
		a.Relay.ActorEmail = people.Email
	}
	a.spawn(func() { a.Relay.Run(bg, time.Second) })
	if fl, ok := a.auditBackend.(*filelog.Log); ok && cfg.Audit.Archive.Enabled() {
		a.spawn(func() { retain(bg, fl, a.Audit, cfg.Audit.Archive, log) })
	}
	if err := startExporters(bg, a.spawn, cfg.Audit.Exporters, a.Audit, log); err != nil {
		return nil, err
	}

	if a.Policies, err = policy.OpenRegistry(bg, registryConfig(cfg.Policy, log), a.Store); err != nil {
		return nil, err
	}
	if a.EnforcementPoints, err = decide.OpenEnforcementPoints(bg, a.Store, log, nil); err != nil {
		return nil, err
	}
	var clock func() time.Time
	if shift := cfg.Decide.ClockShift; shift != 0 {
		clock = func() time.Time { return time.Now().Add(shift) }
	}
	if a.Taints, err = taint.Open(ctx, taint.Config{ExpireAfter: cfg.Taints.ExpireAfter, Logger: log}, a.Store); err != nil {
		return nil, err
	}
	var risk decide.RiskSource
	// The responder runs even with the monitor off: the responses already
	// taken still end when they expire.
	a.Responder = respond.New(respond.Config{Leading: a.Audit.Leading, Positions: a.Store, Logger: log}, a.Registry, a.Store, a.Policies)
	if !cfg.Monitor.Disabled {
		if a.Monitor, err = startMonitor(bg, a.spawn, cfg.Monitor, a.Audit, a.Store, a.Responder.Alert, log); err != nil {
			return nil, err
		}
		risk = a.Monitor
	}
	a.Approvals = approvals.New(a.Store, log, clock)
	a.spawn(func() { a.Approvals.Run(bg, 10*time.Second) })
	a.Grants = grants.New(grants.Config{MaxLifetime: cfg.Grants.MaxLifetime, Logger: log, Now: clock}, a.Store, a.Approvals, a.Policies, a.View)
	if err := a.Grants.Load(ctx); err != nil {
		return nil, fmt.Errorf("grants: %w", err)
	}
	a.spawn(func() { a.Grants.Run(bg, a.Store, 10*time.Second) })
	a.Issuer.SetTaskGrants(a.Grants.HasTask)
	decideCfg := decide.Config{Now: clock, Regions: cfg.Decide.RegionPrefixes(), RecordInput: cfg.Decide.RecordInput,
		Record: cfg.Decide.RecordConfig(), RequestBudget: cfg.Decide.RequestBudget, Taints: a.Taints, Risk: risk,
		RestrictedRoles: cfg.Decide.RestrictedRoles, Approvals: a.Approvals, Grants: a.Grants, Logger: log}
	if a.Metrics != nil {
		decideCfg.Observer = a.Metrics
	}
	if a.Decide, err = decide.New(decideCfg, a.Verifier, a.View, a.Policies, a.Audit); err != nil {
		return nil, err
	}
	if cfg.Policy.Dir != "" {
		if err := a.loadPolicyDir(ctx); err != nil {
			return nil, err
		}
		if cfg.Policy.Watch {
			a.spawn(func() { a.watchPolicyDir(bg) })
		}
	}

	deps := server.Deps{
		Registry: a.Registry, Issuer: a.Issuer, Verifier: a.Verifier, Keys: a.Keys, View: a.View, Store: a.Store, Admin: admin,
		Audit: a.Audit, Relay: a.Relay, Policies: a.Policies, Decide: a.Decide, EnforcementPoints: a.EnforcementPoints, Taints: a.Taints,
		Incidents: a.Store, Approvals: a.Approvals, ApprovalStore: a.Store, Humans: people, Access: bootstrap{a.Store},
		Grants: a.Grants, GrantStore: a.Store,
	}
	if a.Monitor != nil {
		deps.Monitor, deps.AlertsDropped = a.Monitor, a.Responder.Dropped
	}
	if a.Metrics != nil {
		deps.Metrics, deps.MetricsHandler = a.Metrics, a.metricsHandler(a.metricsToken)
		a.publish()
	}
	a.Handler = server.New(server.Config{Issuer: id.Issuer, MaxBodyBytes: cfg.Server.MaxBodyBytes, Logger: log,
		Console: cfg.Console.On(cfg.Server.Addr)}, deps)
	a.spawn(func() { a.maintain(bg) })
	ok = true
	return a, nil
}

// masterKey is the key from the environment when it holds one, else the
// key file's, created when there is none.
func masterKey(id config.Identity) (*identity.MasterKey, bool, error) {
	if id.MasterKey != "" {
		mk, err := identity.ParseMasterKey(id.MasterKey)
		if err != nil {
			return nil, false, fmt.Errorf("WARDEN_MASTER_KEY: %w", err)
		}
		return mk, false, nil
	}
	return identity.LoadOrCreateMasterKey(id.MasterKeyFile)
}

// sharedSettings are the settings of cfg that every replica of the store
// must have alike.
func sharedSettings(cfg config.Config) identity.SharedSettings {
	s := identity.SharedSettings{Issuer: cfg.Identity.Issuer, Audience: cfg.Identity.Audience, AuditOrigin: cfg.Audit.Origin,
		TrustDomains: make(map[string]identity.SharedDomain, len(cfg.Identity.TrustDomains)), TaintsExpireAfter: cfg.Taints.ExpireAfter.String()}
	for name, td := range cfg.Identity.TrustDomains {
		s.TrustDomains[name] = identity.SharedDomain{RequireDPoP: td.RequireDPoP}
	}
	return s
}

// OpenStore opens the store cfg names: PostgreSQL for a postgres:// DSN,
// otherwise SQLite in the data directory. The data directory, which holds
// secrets with either store, is made or checked first (openDataDir).
func OpenStore(ctx context.Context, cfg config.Config, log *slog.Logger) (store.Store, error) {
	s, _, err := openStore(ctx, cfg, log)
	return s, err
}

// openStore is OpenStore, with the PostgreSQL store's pool when that is
// the store.
func openStore(ctx context.Context, cfg config.Config, log *slog.Logger) (store.Store, *pgxpool.Pool, error) {
	if err := openDataDir(cfg.Data); err != nil {
		return nil, nil, err
	}
	if cfg.Store != "" {
		s, err := postgres.Open(ctx, postgres.Config{DSN: cfg.Store, Logger: log})
		if err != nil {
			return nil, nil, err
		}
		return s, s.Pool(), nil
	}
	s, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(cfg.Data, "warden.db")})
	if err != nil {
		return nil, nil, err
	}
	return s, nil, nil
}

// pruneMargin is how long records of single-use values and revocations are
// kept after the tokens they protect against have expired: more than any
// clock skew between replicas.
const pruneMargin = time.Hour

// maintain prunes expired replay records, revocations and retired issuer keys.
func (a *App) maintain(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.Store.Prune(ctx, time.Now().Add(-pruneMargin)); err != nil && ctx.Err() == nil {
				a.log.Warn("prune expired records", "err", err)
			}
			a.View.Prune()
			if err := a.Keys.Prune(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("prune retired issuer keys", "err", err)
			}
		}
	}
}

// Run serves the API on cfg.Server.Addr until ctx ends, then drains
// in-flight requests for up to the shutdown timeout. ready, when not nil,
// receives the bound address once the listener is up.
func (a *App) Run(ctx context.Context, ready chan<- string) error {
	ln, err := net.Listen("tcp", a.cfg.Server.Addr)
	if err != nil {
		return err
	}
	return a.Serve(ctx, ln, ready)
}

// Serve is Run on a listener already bound to the server's address (so
// that a start that cannot have its address fails before it makes
// anything); it closes ln.
func (a *App) Serve(ctx context.Context, ln net.Listener, ready chan<- string) error {
	sc := a.cfg.Server
	if !config.IsLoopback(sc.Addr) && sc.TLSCert == "" && !sc.Insecure {
		ln.Close()
		return fmt.Errorf("refusing to serve plain HTTP on %s, which is not a loopback address: give --tls-cert and --tls-key, or --insecure if a TLS proxy fronts this server", sc.Addr)
	}
	if err := a.serveMetrics(ctx); err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{
		Handler:           a.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	if sc.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(sc.TLSCert, sc.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("TLS: %w", err)
		}
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	scheme := "http"
	if srv.TLSConfig != nil {
		ln = tls.NewListener(ln, srv.TLSConfig)
		scheme = "https"
	}
	a.log.Info("serving", "addr", scheme+"://"+ln.Addr().String(), "issuer", a.cfg.Identity.Issuer, "store", a.Store.Backend())
	if a.cfg.Console.On(a.cfg.Server.Addr) {
		a.log.Info("web console", "url", a.cfg.Identity.Issuer+"/ui/")
	}
	if ready != nil {
		ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	a.log.Info("shutting down", "timeout", sc.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), sc.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	a.log.Info("stopped")
	return nil
}

// Close stops background work, closes the audit log (signing a last
// checkpoint over everything appended) and closes the store. Closing twice
// is harmless.
func (a *App) Close() error {
	a.stop()
	a.background.Wait()
	// What follows the store ends before the store closes: a read begun
	// after it would open the database again.
	if a.Keys != nil {
		a.Keys.Wait()
	}
	if a.View != nil {
		a.View.Wait()
	}
	if a.Policies != nil {
		a.Policies.Wait()
	}
	if a.EnforcementPoints != nil {
		a.EnforcementPoints.Wait()
	}
	var errs []error
	if a.Decide != nil {
		a.Decide.Close() // its shadow evaluations record into the audit log
	}
	if a.Taints != nil {
		a.Taints.Close()
	}
	if a.Monitor != nil {
		a.Monitor.Close() // saves its model; it reads the audit log, closed below
	}
	if a.Responder != nil {
		a.Responder.Close()
	}
	if a.Issuer != nil {
		a.Issuer.Close() // its summary of refusals goes to the audit log
	}
	if a.Audit != nil {
		errs = append(errs, a.Audit.Close())
	}
	if a.auditBackend != nil {
		errs = append(errs, a.auditBackend.Close())
	}
	if a.Store != nil {
		errs = append(errs, a.Store.Close())
	}
	if a.stopTracing != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.stopTracing(ctx); err != nil {
			a.log.Warn("tracing: the last spans could not be exported", "err", err)
		}
	}
	return errors.Join(errs...)
}
