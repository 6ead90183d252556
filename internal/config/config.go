// Package config turns warden.yaml, WARDEN_* environment variables and
// command-line flags into one typed, validated Config. Unknown keys are errors.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/warden-run/warden/internal/decide/record"
	"github.com/warden-run/warden/internal/humans"
	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/monitor"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/tracing"
)

// Config is Warden's whole configuration. Every field has a safe default.
type Config struct {
	// Data is the data directory: the embedded database, the admin token and
	// the master key live here.
	Data string `yaml:"data"`
	// Store is empty for the embedded SQLite store in Data, or a
	// postgres:// URL for a shared PostgreSQL.
	Store    string   `yaml:"store"`
	Server   Server   `yaml:"server"`
	Log      Log      `yaml:"log"`
	Identity Identity `yaml:"identity"`
	Audit    Audit    `yaml:"audit"`
	Policy   Policy   `yaml:"policy"`
	Decide   Decide   `yaml:"decide"`
	Taints   Taints   `yaml:"taints"`
	Monitor  Monitor  `yaml:"monitor"`
	// Humans signs people in through an OpenID provider; their roles come
	// from the provider's groups.
	Humans humans.Config `yaml:"humans"`
	Grants Grants        `yaml:"grants"`
	// Metrics publishes Prometheus metrics at /metrics on the server's
	// listener and the gateway's.
	Metrics Metrics `yaml:"metrics"`
	// Tracing exports OpenTelemetry traces of agents' actions over OTLP;
	// off unless an endpoint is set.
	Tracing tracing.Config `yaml:"tracing"`
	// Console is the web console at /ui/.
	Console Console `yaml:"console"`
	// Gateway is the file of an MCP gateway (gateway.yaml) this server runs
	// in its own process, on the gateway's own listen address.
	Gateway string `yaml:"gateway"`
	// UpdateSharedSettings replaces the settings recorded for every replica
	// of the store (issuer, audience, trust domains, taint expiry) with this
	// one's, instead of refusing to start when they differ. Set for one
	// start by warden serve --update-shared-settings, never from a file.
	UpdateSharedSettings bool `yaml:"-"`
	// AdminToken, when set, is the bootstrap admin token a new deployment
	// starts with, instead of a random one written to the data directory:
	// from the environment (WARDEN_ADMIN_TOKEN), never from a file, for
	// containers whose data directory nobody can read. Ignored once the
	// deployment has its token.
	AdminToken string `yaml:"-"`
}

// Metrics configures /metrics.
type Metrics struct {
	// Disabled turns /metrics off.
	Disabled bool `yaml:"disabled"`
	// TokenFile, when set, holds a bearer token a scraper must present at
	// /metrics on the server's and the gateway's listeners (mode 0600);
	// without it those answer loopback clients only, since agents reach
	// them and the figures are every agent's.
	TokenFile string `yaml:"token_file"`
	// Listen, when set, is a listener of its own for /metrics, /healthz
	// and /readyz, without credentials: bind it where only the scraper
	// reaches.
	Listen string `yaml:"listen"`
}

// Policy configures the policies the decision point evaluates.
type Policy struct {
	// Timeout bounds one evaluation; a policy that takes longer is a deny.
	Timeout time.Duration `yaml:"timeout"`
	// Dir, when set, is a bundle directory pushed at start and activated
	// if it compiles and passes its tests.
	Dir string `yaml:"dir"`
	// Watch pushes and activates Dir again whenever it changes, still only
	// when it passes its tests (for development).
	Watch bool `yaml:"watch"`
	// Limits bound what a pushed or activated bundle may hold.
	Limits PolicyLimits `yaml:"limits"`
	// Tests bound the test runs of pushes and activations.
	Tests PolicyTests `yaml:"tests"`
	// TestWorker is the command that runs a bundle's tests in a worker
	// process within Tests' limits: set by `warden serve` and `warden
	// gateway` to the warden binary itself, never read from a file.
	// Empty runs them in the server's process, without a memory limit
	// (Warden's own tests).
	TestWorker []string `yaml:"-"`
}

// PolicyTests bound the test runs of pushes and activations, which run
// code from whoever pushed the bundle.
type PolicyTests struct {
	// Concurrency is how many test runs may go on at once; a push or an
	// activation past it is refused as busy.
	Concurrency int `yaml:"concurrency"`
	// Timeout bounds one whole run; past it the run is stopped.
	Timeout time.Duration `yaml:"timeout"`
	// MemoryBytes bounds the memory of one run's worker; past it the run
	// is stopped.
	MemoryBytes int64 `yaml:"memory_bytes"`
}

// PolicyLimits bound a bundle, so that a push cannot exhaust the server
// and one builtin call over the data document stays short.
type PolicyLimits struct {
	// BundleBytes is the most bytes a bundle's files may hold in all.
	BundleBytes int `yaml:"bundle_bytes"`
	// BundleFiles is the most files a bundle may hold.
	BundleFiles int `yaml:"bundle_files"`
	// DataBytes is the most bytes of a bundle's data document.
	DataBytes int `yaml:"data_bytes"`
}

// Bundle is the limits as the policy engine takes them.
func (l PolicyLimits) Bundle() policy.Limits {
	return policy.Limits{Files: l.BundleFiles, Bytes: l.BundleBytes, DataBytes: l.DataBytes}
}

// Decide configures the decision pipeline.
type Decide struct {
	// RecordInput keeps each decision's whole input in its audit entry, for
	// replay; its digest is always kept.
	RecordInput bool `yaml:"record_input"`
	// Redact lists input paths, such as args.card.number or
	// args.items[*].password, replaced by "[redacted]" in the recorded
	// input.
	Redact []string `yaml:"redact"`
	// RedactDefaultKeys redacts, at any depth of args, the values of
	// members with secret-looking names (password, token, api_key, ...);
	// RedactKeys adds names to that list, and Keep lists paths in args the
	// names do not redact.
	RedactDefaultKeys bool     `yaml:"redact_default_keys"`
	RedactKeys        []string `yaml:"redact_keys"`
	Keep              []string `yaml:"keep"`
	// RecordMaxValueBytes bounds one string or number of args in the
	// recorded input, RecordMaxInputBytes the recorded input: what is
	// larger is recorded as its size and SHA-256.
	RecordMaxValueBytes int `yaml:"record_max_value_bytes"`
	RecordMaxInputBytes int `yaml:"record_max_input_bytes"`
	// RequestBudget bounds the evaluations of one batch or may-allow
	// request together; what is left when it is spent is denied or hidden.
	// Unset, it is 1s or policy.timeout, whichever is longer.
	RequestBudget time.Duration `yaml:"request_budget"`
	// Regions maps region names to CIDR ranges; a decision's
	// context.source.region is the most specific range holding the
	// agent's address.
	Regions map[string][]string `yaml:"regions"`
	// RestrictedRoles, when set, are the only roles a restricted agent
	// keeps: policy sees the intersection of its token's roles with them
	// (possibly none), on top of the guardrails' reads only.
	RestrictedRoles []string `yaml:"restricted_roles"`
	// ClockShift moves the policy's clock (context.time, and the time of
	// decision entries) from the wall clock; set only by `warden demo`,
	// which plays its scenarios in market hours whenever it runs, and
	// never read from a file.
	ClockShift time.Duration `yaml:"-"`
}

// Taints configures how long the marks of untrusted reads last
// (docs/mcp-gateway.md, "Taints").
type Taints struct {
	// ExpireAfter ends a taint this long after the agent's last read that
	// set or renewed it; 0 keeps taints until an operator clears them.
	ExpireAfter time.Duration `yaml:"expire_after"`
}

// Grants configures just-in-time task grants.
type Grants struct {
	// MaxLifetime bounds every grant, whatever is asked or approved.
	MaxLifetime time.Duration `yaml:"max_lifetime"`
}

// Monitor configures behavioural monitoring: per-agent baselines, signals
// and the risk score policy reads (docs/monitoring.md).
type Monitor struct {
	// Disabled turns the monitor off: every decision's risk is then low
	// (score 0), never stale.
	Disabled bool `yaml:"disabled"`
	// StaleAfter is how long the monitor may be behind the audit log
	// before the risk decisions see is marked stale. Default 5s.
	StaleAfter time.Duration `yaml:"stale_after"`
	// The model's thresholds and weights; each left out is its default.
	Model monitor.Config `yaml:",inline"`
}

// Audit configures the tamper-evident log.
type Audit struct {
	// Mode is sync (an entry is durable before Append returns) or async (it
	// is queued; a full queue refuses entries, and the decisions with them).
	Mode        string `yaml:"mode"`
	AsyncBuffer int    `yaml:"async_buffer"`
	// A checkpoint is signed every CheckpointEvery entries or
	// CheckpointInterval, whichever comes first, and on shutdown.
	CheckpointEvery    int64         `yaml:"checkpoint_every"`
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// Origin names the log in its checkpoints; it is fixed when the log's
	// key is made. Defaults to the issuer's host and port with "/audit".
	Origin string `yaml:"origin"`
	// Exporters stream the log to SIEMs.
	Exporters []Exporter `yaml:"exporters"`
	// Archive moves the embedded log's sealed segments to a directory or
	// an S3-compatible bucket once they are old enough, keeping the tree
	// and the checkpoints here (operations.md, "Retention").
	Archive Archive `yaml:"archive"`
	// SegmentEntries is how many entries one segment file of the embedded
	// log holds (default 65,536, about 90 MB with recorded inputs): the
	// unit that is archived.
	SegmentEntries int64 `yaml:"segment_entries"`
}

// Console configures the web console.
type Console struct {
	// Enabled serves it at /ui/ on the server's listener. Unset: on when
	// the server listens on loopback, off otherwise (turn it on for a
	// server reached over TLS or behind a proxy).
	Enabled *bool `yaml:"enabled"`
}

// On says whether the console is served for a server listening on addr.
func (c Console) On(addr string) bool {
	if c.Enabled != nil {
		return *c.Enabled
	}
	return IsLoopback(addr)
}

// Archive says where sealed audit segments go, and when.
type Archive struct {
	// Dir is a directory (another disk, a mounted volume).
	Dir string `yaml:"dir"`
	// S3 is an S3-compatible bucket.
	S3 *S3Archive `yaml:"s3"`
	// KeepLocal: a sealed segment last written longer ago than this, and
	// under a signed checkpoint, is archived. Default 168h (a week).
	KeepLocal time.Duration `yaml:"keep_local"`
	// Interval is how often to look (default 1h).
	Interval time.Duration `yaml:"interval"`
}

// Enabled says whether an archive is configured.
func (a Archive) Enabled() bool { return a.Dir != "" || a.S3 != nil }

// S3Archive is a bucket; its credentials come from files, or from the
// environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, an instance role)
// when no file is named.
type S3Archive struct {
	// Endpoint is host[:port], such as s3.eu-west-1.amazonaws.com.
	Endpoint      string `yaml:"endpoint"`
	Bucket        string `yaml:"bucket"`
	Prefix        string `yaml:"prefix"`
	Region        string `yaml:"region"`
	AccessKeyFile string `yaml:"access_key_file"`
	SecretKeyFile string `yaml:"secret_key_file"`
	// Insecure uses plain HTTP; allowed for a loopback endpoint only.
	Insecure bool `yaml:"insecure"`
}

// Exporter streams the audit log to one destination. Secrets come from
// files, never from the configuration itself.
type Exporter struct {
	// Name identifies the exporter and its position in the log.
	Name string `yaml:"name"`
	// Type is syslog, ocsf, splunk_hec or webhook.
	Type string `yaml:"type"`
	// syslog: Address (host:port), TLS, CAFile (else the system's roots),
	// Format (json or cef), Facility (0 to 23; unset means 10).
	Address  string `yaml:"address"`
	TLS      bool   `yaml:"tls"`
	CAFile   string `yaml:"ca_file"`
	Format   string `yaml:"format"`
	Facility *int   `yaml:"facility"`
	// ocsf, splunk_hec, webhook: the receiver's URL.
	URL string `yaml:"url"`
	// TokenFile: the HEC token (splunk_hec), or a bearer token (ocsf, optional).
	TokenFile string `yaml:"token_file"`
	// SecretFile: the HMAC key of webhook signatures.
	SecretFile string `yaml:"secret_file"`
}

// Server configures the HTTP API.
type Server struct {
	// Addr is host:port to listen on.
	Addr    string `yaml:"addr"`
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// Insecure allows plain HTTP on a non-loopback address. Never in production.
	Insecure bool `yaml:"insecure"`
	// MaxBodyBytes caps request bodies.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// ShutdownTimeout bounds the graceful drain on SIGINT/SIGTERM.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// Log configures log/slog output.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Identity configures agent identity and tokens.
type Identity struct {
	// Issuer is the URL agents and verifiers know this server by: the iss of
	// every token and the aud of every client assertion. Defaults to the
	// server's own URL.
	Issuer string `yaml:"issuer"`
	// Audience is the aud of access tokens when the client names no resource.
	Audience string `yaml:"audience"`
	// Resources are the other resource indicators (RFC 8707) agents may ask
	// tokens for: the URLs of enforcement points, such as an MCP gateway,
	// that accept only tokens issued for them. A gateway run by this server
	// adds its own.
	Resources []string `yaml:"resources"`
	// TokenTTL is the access token lifetime when the client asks for none.
	TokenTTL time.Duration `yaml:"token_ttl"`
	// MaxTokenTTL is the longest lifetime a client may ask for; at most 15 minutes.
	MaxTokenTTL time.Duration `yaml:"max_token_ttl"`
	// ClockSkew is the leeway allowed on iat/nbf/exp between machines.
	ClockSkew time.Duration `yaml:"clock_skew"`
	// KeyGrace is how long an agent's old key keeps working after rotate-key.
	KeyGrace time.Duration `yaml:"key_grace"`
	// MasterKeyFile holds the key that encrypts issuer signing keys at rest.
	// Defaults to <data>/master.key; every replica needs the same one.
	MasterKeyFile string `yaml:"master_key_file"`
	// MasterKey, when set, is the master key itself (64 hex digits), from
	// the environment (WARDEN_MASTER_KEY), never from a file: for
	// containers, which take secrets as variables more easily than as
	// files only their user can read. MasterKeyFile is then not read.
	MasterKey string `yaml:"-"`
	// MaxStaleness is how long the token verifier keeps trusting its view of
	// revocations while the change feed is disconnected; then it fails closed.
	MaxStaleness time.Duration `yaml:"max_staleness"`
	// TrustDomains lists the trust domains agents may belong to.
	TrustDomains map[string]TrustDomain `yaml:"trust_domains"`
	// DPoP bounds the memory of DPoP proofs already used.
	DPoP DPoP `yaml:"dpop"`
	// TokenEndpoint bounds failed authentications at /oauth/token.
	TokenEndpoint TokenEndpoint `yaml:"token_endpoint"`
}

// RateLimit is a token bucket: Rate per second, bursts of up to Burst.
type RateLimit struct {
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`
}

// Bucket is r as the identity package takes it.
func (r RateLimit) Bucket() identity.Rate { return identity.Rate{PerSecond: r.Rate, Burst: r.Burst} }

func limitOf(r identity.Rate) RateLimit { return RateLimit{Rate: r.PerSecond, Burst: r.Burst} }

// DPoP configures the replay memory of DPoP proofs, in each replica.
type DPoP struct {
	// ReplayCapacity is how many proof ids are remembered at most (about
	// 48 bytes each); a proof that finds it full is refused (503).
	ReplayCapacity int `yaml:"replay_capacity"`
	// ProofsPerKey is how many proofs one key may have accepted; past it
	// the agent is answered 429 with Retry-After.
	ProofsPerKey RateLimit `yaml:"proofs_per_key"`
}

// TokenEndpoint bounds what clients make the token endpoint do.
type TokenEndpoint struct {
	// FailuresPerSource: failed authentications one address (an IPv6 /64)
	// may cause; then 429. Behind a proxy every client has the proxy's
	// address: raise the burst above the token requests in flight at once.
	FailuresPerSource RateLimit `yaml:"failures_per_source"`
	// FailuresPerAgent: failed authentications naming one agent id.
	FailuresPerAgent RateLimit `yaml:"failures_per_agent"`
	// RequestsPerAgent: requests of one authenticated agent (tokens,
	// exchanges, revocations).
	RequestsPerAgent RateLimit `yaml:"requests_per_agent"`
	// RefusalEntries: refusals recorded one by one in the audit log and
	// the server log; the others are summarised every 10 seconds.
	RefusalEntries RateLimit `yaml:"refusal_entries"`
}

// TrustDomain configures one trust domain.
type TrustDomain struct {
	Description string `yaml:"description"`
	// RequireDPoP makes enforcement points refuse this domain's tokens
	// without a DPoP proof of possession.
	RequireDPoP bool `yaml:"require_dpop"`
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		Data: "./warden-data",
		Server: Server{
			Addr:            "127.0.0.1:7070",
			MaxBodyBytes:    1 << 20,
			ShutdownTimeout: 10 * time.Second,
		},
		Log: Log{Level: "info", Format: "text"},
		Identity: Identity{
			Audience:     "warden",
			TokenTTL:     5 * time.Minute,
			MaxTokenTTL:  identity.MaxTokenLifetime,
			ClockSkew:    30 * time.Second,
			KeyGrace:     24 * time.Hour,
			MaxStaleness: 5 * time.Second,
			TrustDomains: map[string]TrustDomain{
				"prod":    {Description: "production agents", RequireDPoP: true},
				"staging": {Description: "staging agents"},
				"dev":     {Description: "development agents"},
			},
			DPoP: DPoP{ReplayCapacity: identity.DefaultReplayCapacity, ProofsPerKey: limitOf(identity.DefaultProofsPerKey)},
			TokenEndpoint: TokenEndpoint{
				FailuresPerSource: limitOf(identity.DefaultTokenEndpointLimits.FailuresPerSource),
				FailuresPerAgent:  limitOf(identity.DefaultTokenEndpointLimits.FailuresPerAgent),
				RequestsPerAgent:  limitOf(identity.DefaultTokenEndpointLimits.RequestsPerAgent),
				RefusalEntries:    limitOf(identity.DefaultTokenEndpointLimits.RefusalEntries),
			},
		},
		Audit:  Audit{Mode: "sync", AsyncBuffer: 10_000, CheckpointEvery: 1000, CheckpointInterval: time.Second},
		Policy: Policy{Timeout: 50 * time.Millisecond, Limits: defaultPolicyLimits(), Tests: PolicyTests{Concurrency: 2, Timeout: time.Minute, MemoryBytes: 512 << 20}},
		Decide: Decide{RecordInput: true, RedactDefaultKeys: true,
			RecordMaxValueBytes: record.DefaultMaxValueBytes, RecordMaxInputBytes: record.DefaultMaxInputBytes},
		Taints: Taints{ExpireAfter: time.Hour},
		Grants: Grants{MaxLifetime: time.Hour},
	}
}

// RecordConfig is what a decision's recorded input leaves out.
func (d Decide) RecordConfig() record.Config {
	return record.Config{Paths: d.Redact, Keys: d.RedactKeys, NoDefaultKeys: !d.RedactDefaultKeys, Keep: d.Keep,
		MaxValueBytes: d.RecordMaxValueBytes, MaxInputBytes: d.RecordMaxInputBytes}
}

// RegionPrefixes parses Decide.Regions (Validate has checked them).
func (d Decide) RegionPrefixes() map[string][]netip.Prefix {
	out := make(map[string][]netip.Prefix, len(d.Regions))
	for name, cidrs := range d.Regions {
		for _, c := range cidrs {
			if p, err := netip.ParsePrefix(c); err == nil {
				out[name] = append(out[name], p)
			}
		}
	}
	return out
}

// LoadFile merges the YAML file at path over cfg. Unknown keys are errors.
func LoadFile(cfg *Config, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return Decode(cfg, b, path)
}

// Decode merges YAML b over cfg; name is used in error messages.
func Decode(cfg *Config, b []byte, name string) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var file Config
	// Trust domains in a file replace the defaults rather than merging with them.
	file = *cfg
	file.Identity.TrustDomains = nil
	if err := dec.Decode(&file); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return fmt.Errorf("config %s: %w", name, err)
	}
	if err := dec.Decode(new(any)); !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: more than one YAML document (after ---): put every setting in one", name)
	}
	if file.Identity.TrustDomains == nil {
		file.Identity.TrustDomains = cfg.Identity.TrustDomains
	}
	*cfg = file
	return nil
}

// Env variables read by ApplyEnv, with what each sets.
var envVars = []struct {
	name, help string
	set        func(*Config, string) error
}{
	{"WARDEN_DATA", "data directory", func(c *Config, v string) error { c.Data = v; return nil }},
	{"WARDEN_STORE", "store DSN", func(c *Config, v string) error { c.Store = v; return nil }},
	{"WARDEN_ADDR", "listen address", func(c *Config, v string) error { c.Server.Addr = v; return nil }},
	{"WARDEN_GATEWAY", "MCP gateway configuration file", func(c *Config, v string) error { c.Gateway = v; return nil }},
	{"WARDEN_TLS_CERT", "TLS certificate file", func(c *Config, v string) error { c.Server.TLSCert = v; return nil }},
	{"WARDEN_TLS_KEY", "TLS key file", func(c *Config, v string) error { c.Server.TLSKey = v; return nil }},
	{"WARDEN_INSECURE", "allow plain HTTP off loopback", func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		c.Server.Insecure = b
		return err
	}},
	{"WARDEN_ISSUER", "issuer URL", func(c *Config, v string) error { c.Identity.Issuer = v; return nil }},
	{"WARDEN_LOG_LEVEL", "log level", func(c *Config, v string) error { c.Log.Level = v; return nil }},
	{"WARDEN_LOG_FORMAT", "log format", func(c *Config, v string) error { c.Log.Format = v; return nil }},
	{"WARDEN_MASTER_KEY", "master key (64 hex digits)", func(c *Config, v string) error { c.Identity.MasterKey = v; return nil }},
	{"WARDEN_ADMIN_TOKEN", "the first admin token of a new deployment", func(c *Config, v string) error { c.AdminToken = v; return nil }},
}

// secretVars are variables that hold secrets: set but empty is an error,
// not "unset" (an empty Kubernetes Secret would otherwise make a new
// master key in a pod's scratch volume).
var secretVars = []string{"WARDEN_MASTER_KEY", "WARDEN_ADMIN_TOKEN"}

// ApplyEnv sets cfg fields from the WARDEN_* variables that lookup finds.
func ApplyEnv(cfg *Config, lookup func(string) (string, bool)) error {
	for _, name := range secretVars {
		if v, ok := lookup(name); ok && strings.TrimSpace(v) == "" {
			return fmt.Errorf("config: %s is set but empty: give it its value, or unset it", name)
		}
	}
	for _, e := range envVars {
		if v, ok := lookup(e.name); ok && v != "" {
			if err := e.set(cfg, v); err != nil {
				return fmt.Errorf("config: %s=%q: %w", e.name, v, err)
			}
		}
	}
	return nil
}

// Validate checks cfg and fills derived defaults (issuer, audit origin,
// master key path). Every problem is named at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	c.validateServer(bad)
	c.validateIdentity(bad)
	c.validatePolicy(bad)
	c.validateAudit(bad)
	if _, err := monitor.NewModel(c.Monitor.Model); err != nil {
		bad("%v", err)
	}
	if c.Monitor.StaleAfter < 0 {
		bad("monitor.stale_after cannot be negative")
	}
	if c.Metrics.Disabled && (c.Metrics.TokenFile != "" || c.Metrics.Listen != "") {
		bad("metrics.token_file or metrics.listen is set while metrics.disabled is true: remove one")
	}
	if err := c.Tracing.Check(); err != nil {
		bad("%v", err)
	}
	if l := c.Metrics.Listen; l != "" {
		if _, _, err := net.SplitHostPort(l); err != nil {
			bad("metrics.listen %q: want host:port", l)
		}
	}
	if err := c.Humans.Check(); err != nil {
		bad("%v", err)
	}
	if c.Grants.MaxLifetime < time.Minute || c.Grants.MaxLifetime > 7*24*time.Hour {
		bad("grants.max_lifetime %s: want 1m to 168h", c.Grants.MaxLifetime)
	}
	if c.Identity.MasterKeyFile == "" {
		c.Identity.MasterKeyFile = filepath.Join(c.Data, "master.key")
	}
	if n := len(c.AdminToken); n > 0 && n < 32 {
		bad("WARDEN_ADMIN_TOKEN: %d characters; an admin token needs at least 32 (openssl rand -hex 32)", n) // the value is a secret
	}
	if k := c.Identity.MasterKey; k != "" {
		if _, err := identity.ParseMasterKey(k); err != nil {
			bad("WARDEN_MASTER_KEY: %v", err) // the value is a secret: never repeated
		}
	}
	return errors.Join(errs...)
}

// complaint adds a problem of the configuration to those found.
type complaint func(format string, a ...any)

// validateServer checks the data directory, store, listener and log.
func (c *Config) validateServer(bad complaint) {
	if c.Data == "" {
		bad("data: a data directory is required (it holds the admin token and master key, and the embedded store)")
	}
	if c.Store != "" && !strings.HasPrefix(c.Store, "postgres://") && !strings.HasPrefix(c.Store, "postgresql://") {
		bad("store: want empty (embedded SQLite) or a postgres:// URL")
	}
	_, _, err := net.SplitHostPort(c.Server.Addr)
	if err != nil {
		bad("server.addr %q: want host:port", c.Server.Addr)
	}
	if err == nil && !IsLoopback(c.Server.Addr) && c.Server.TLSCert == "" && !c.Server.Insecure {
		bad("server.addr %s is not a loopback address: plain HTTP there needs tls_cert and tls_key (--tls-cert, --tls-key), or insecure (--insecure) when a TLS proxy fronts this server", c.Server.Addr)
	}
	if (c.Server.TLSCert == "") != (c.Server.TLSKey == "") {
		bad("server: tls_cert and tls_key go together")
	}
	if c.Server.MaxBodyBytes <= 0 {
		bad("server.max_body_bytes must be positive")
	}
	if c.Server.ShutdownTimeout <= 0 {
		bad("server.shutdown_timeout must be positive")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level %q: want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format %q: want text or json", c.Log.Format)
	}
}

// validateIdentity checks identity and taints, and fills the issuer
// from server.addr when none is set.
func (c *Config) validateIdentity(bad complaint) {
	host, _, err := net.SplitHostPort(c.Server.Addr)
	id := &c.Identity
	if id.MaxTokenTTL <= 0 || id.MaxTokenTTL > identity.MaxTokenLifetime {
		bad("identity.max_token_ttl %s: want more than 0 and at most %s", id.MaxTokenTTL, identity.MaxTokenLifetime)
	}
	if id.TokenTTL <= 0 || id.TokenTTL > id.MaxTokenTTL {
		bad("identity.token_ttl %s: want more than 0 and at most max_token_ttl (%s)", id.TokenTTL, id.MaxTokenTTL)
	}
	if id.ClockSkew < 0 || id.ClockSkew > 5*time.Minute {
		bad("identity.clock_skew %s: want 0 to 5m", id.ClockSkew)
	}
	if id.KeyGrace < 0 {
		bad("identity.key_grace must not be negative")
	}
	if c.Taints.ExpireAfter < 0 {
		bad("taints.expire_after must not be negative (0 keeps taints until an operator clears them)")
	}
	if id.MaxStaleness <= 0 {
		bad("identity.max_staleness must be positive")
	}
	if id.Audience == "" {
		bad("identity.audience must not be empty")
	}
	for _, r := range id.Resources {
		if u, err := url.Parse(r); err != nil || !u.IsAbs() || u.Fragment != "" {
			bad("identity.resources: %q is not an absolute URL without a fragment", r)
		}
	}
	if len(id.TrustDomains) == 0 {
		bad("identity.trust_domains: declare at least one trust domain")
	}
	for name := range id.TrustDomains {
		if !validDomainName(name) {
			bad("identity.trust_domains: %q is not a valid trust domain (a-z, 0-9, '-', '_', '.')", name)
		}
	}
	if id.DPoP.ReplayCapacity < 1000 {
		bad("identity.dpop.replay_capacity %d: want at least 1000", id.DPoP.ReplayCapacity)
	}
	for name, r := range map[string]RateLimit{"dpop.proofs_per_key": id.DPoP.ProofsPerKey,
		"token_endpoint.failures_per_source": id.TokenEndpoint.FailuresPerSource,
		"token_endpoint.failures_per_agent":  id.TokenEndpoint.FailuresPerAgent,
		"token_endpoint.requests_per_agent":  id.TokenEndpoint.RequestsPerAgent,
		"token_endpoint.refusal_entries":     id.TokenEndpoint.RefusalEntries} {
		if math.IsNaN(r.Rate) || math.IsInf(r.Rate, 0) || r.Rate <= 0 || r.Burst < 1 {
			bad("identity.%s: want a positive, finite rate (per second) and a burst of at least 1", name)
		}
	}
	if ip := net.ParseIP(host); id.Issuer == "" && err == nil && (host == "" || ip != nil && ip.IsUnspecified()) {
		bad("identity.issuer: server.addr %q listens on every interface; set the URL agents use to reach this server (--issuer)", c.Server.Addr)
	}
	if id.Issuer == "" {
		scheme := "http"
		if c.Server.TLSCert != "" {
			scheme = "https"
		}
		id.Issuer = scheme + "://" + c.Server.Addr
	}
	if !strings.HasPrefix(id.Issuer, "https://") && !strings.HasPrefix(id.Issuer, "http://") {
		bad("identity.issuer %q: want an http(s) URL", id.Issuer)
	}
	id.Issuer = strings.TrimSuffix(id.Issuer, "/")
}

// validatePolicy checks policy and decide, and fills the request budget.
func (c *Config) validatePolicy(bad complaint) {
	if c.Policy.Timeout <= 0 || c.Policy.Timeout > 10*time.Second {
		bad("policy.timeout %s: want more than 0 and at most 10s", c.Policy.Timeout)
	}
	if c.Policy.Watch && c.Policy.Dir == "" {
		bad("policy.watch needs policy.dir (--policies DIR)")
	}
	c.Policy.Limits.validate(bad)
	if t := c.Policy.Tests; t.Concurrency < 1 || t.Concurrency > 64 {
		bad("policy.tests.concurrency %d: want 1 to 64", t.Concurrency)
	}
	if t := c.Policy.Tests; t.Timeout < time.Second || t.Timeout > 10*time.Minute {
		bad("policy.tests.timeout %s: want 1s to 10m", t.Timeout)
	}
	if t := c.Policy.Tests; t.MemoryBytes < 128<<20 || t.MemoryBytes > 64<<30 {
		bad("policy.tests.memory_bytes %d: want 134217728 (128 MiB) to 68719476736 (64 GiB)", t.MemoryBytes)
	}
	if c.Decide.RequestBudget == 0 {
		c.Decide.RequestBudget = max(time.Second, c.Policy.Timeout)
	}
	if b := c.Decide.RequestBudget; b < c.Policy.Timeout || b > time.Minute {
		bad("decide.request_budget %s: want at least policy.timeout (%s) and at most 1m", b, c.Policy.Timeout)
	}
	if c.Decide.RecordMaxValueBytes <= 0 || c.Decide.RecordMaxInputBytes <= 0 {
		bad("decide.record_max_value_bytes and decide.record_max_input_bytes must be positive")
	} else if _, err := record.New(c.Decide.RecordConfig()); err != nil {
		bad("decide: %s", strings.TrimPrefix(err.Error(), "record: "))
	}
	for name, cidrs := range c.Decide.Regions {
		if name == "" || len(name) > 64 {
			bad("decide.regions: %q: want a name of 1 to 64 bytes", name)
		}
		for _, cidr := range cidrs {
			if _, err := netip.ParsePrefix(cidr); err != nil {
				bad("decide.regions.%s: %q is not a CIDR range such as 10.1.0.0/16", name, cidr)
			}
		}
	}
}

// validateAudit checks the audit log and its exporters, and fills the
// origin from the issuer.
func (c *Config) validateAudit(bad complaint) {
	id := &c.Identity
	a := &c.Audit
	if a.Mode != "sync" && a.Mode != "async" {
		bad("audit.mode %q: want sync or async", a.Mode)
	}
	if a.AsyncBuffer <= 0 {
		bad("audit.async_buffer must be positive")
	}
	if a.CheckpointEvery <= 0 || a.CheckpointInterval <= 0 {
		bad("audit.checkpoint_every and audit.checkpoint_interval must be positive")
	}
	if a.Origin == "" {
		if u, err := url.Parse(id.Issuer); err == nil && u.Host != "" {
			a.Origin = u.Host + "/audit"
		}
	}
	if a.Origin == "" || strings.ContainsAny(a.Origin, "+") || strings.IndexFunc(a.Origin, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
		bad("audit.origin %q: want a name without spaces or '+', such as warden.example.com/audit", a.Origin)
	}
	if a.SegmentEntries < 0 || a.SegmentEntries > 0 && a.SegmentEntries < 16 {
		bad("audit.segment_entries %d: want at least 16 (or 0 for the default, 65,536)", a.SegmentEntries)
	}
	if ar := &a.Archive; ar.Enabled() {
		switch {
		case c.Store != "":
			bad("audit.archive is for the embedded log; with PostgreSQL (store), keep the audit_entries table with the database's own retention and backups")
		case ar.Dir != "" && ar.S3 != nil:
			bad("audit.archive: dir or s3, not both")
		case ar.S3 != nil:
			s3 := ar.S3
			if s3.Endpoint == "" || strings.Contains(s3.Endpoint, "/") {
				bad("audit.archive.s3.endpoint %q: want host[:port], such as s3.eu-west-1.amazonaws.com", s3.Endpoint)
			}
			if s3.Bucket == "" {
				bad("audit.archive.s3.bucket is required")
			}
			if (s3.AccessKeyFile == "") != (s3.SecretKeyFile == "") {
				bad("audit.archive.s3: access_key_file and secret_key_file go together (neither: the environment's credentials)")
			}
			if s3.Insecure && !IsLoopback(s3.Endpoint) {
				bad("audit.archive.s3.insecure: plain HTTP is for a loopback endpoint only, not %q", s3.Endpoint)
			}
		}
		if ar.KeepLocal == 0 {
			ar.KeepLocal = 7 * 24 * time.Hour
		}
		if ar.Interval == 0 {
			ar.Interval = time.Hour
		}
		if ar.KeepLocal < 0 || ar.Interval < time.Second {
			bad("audit.archive: keep_local must not be negative, and interval must be at least 1s")
		}
	}
	names := map[string]bool{}
	for i, x := range a.Exporters {
		where := fmt.Sprintf("audit.exporters[%d]", i)
		if !exporterName.MatchString(x.Name) || names[x.Name] {
			bad("%s: name %q: want a unique name of a-z, 0-9, '-', '_'", where, x.Name)
		}
		names[x.Name] = true
		switch x.Type {
		case "syslog":
			if _, _, err := net.SplitHostPort(x.Address); err != nil {
				bad("%s: address %q: want host:port", where, x.Address)
			}
			if x.Format != "" && x.Format != "json" && x.Format != "cef" {
				bad("%s: format %q: want json or cef", where, x.Format)
			}
			if x.Facility != nil && (*x.Facility < 0 || *x.Facility > 23) {
				bad("%s: facility %d: want 0 to 23", where, *x.Facility)
			}
			if x.CAFile != "" && !x.TLS {
				bad("%s: ca_file needs tls: true", where)
			}
		case "ocsf", "splunk_hec", "webhook":
			if u, err := url.Parse(x.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				bad("%s: url %q: want an http(s) URL", where, x.URL)
			}
			if x.Type == "splunk_hec" && x.TokenFile == "" {
				bad("%s: token_file (the HEC token) is required", where)
			}
			if x.Type == "webhook" && x.SecretFile == "" {
				bad("%s: secret_file (the HMAC key) is required", where)
			}
		default:
			bad("%s: type %q: want syslog, ocsf, splunk_hec or webhook", where, x.Type)
		}
	}
}

// exporterName: the position of exporter NAME is kept under "siem-NAME",
// which must fit the backends' 64 characters.
var exporterName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,49}$`)

func validDomainName(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// IsLoopback reports whether addr (host:port) listens on loopback only.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func defaultPolicyLimits() PolicyLimits {
	d := policy.DefaultLimits()
	return PolicyLimits{BundleBytes: d.Bytes, BundleFiles: d.Files, DataBytes: d.DataBytes}
}

func (l PolicyLimits) validate(bad complaint) {
	maxLimits := policy.MaxLimits()
	if l.BundleBytes < 1<<10 || l.BundleBytes > maxLimits.Bytes {
		bad("policy.limits.bundle_bytes %d: want 1024 to %d", l.BundleBytes, maxLimits.Bytes)
	}
	if l.BundleFiles < 1 || l.BundleFiles > maxLimits.Files {
		bad("policy.limits.bundle_files %d: want 1 to %d", l.BundleFiles, maxLimits.Files)
	}
	if l.DataBytes < 1 || l.DataBytes > min(l.BundleBytes, maxLimits.DataBytes) {
		bad("policy.limits.data_bytes %d: want 1 to policy.limits.bundle_bytes (at most %d)", l.DataBytes, maxLimits.DataBytes)
	}
}
