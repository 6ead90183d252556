package config

import (
	"strings"
	"testing"
	"time"
)

func TestDecodeAndValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		yaml    string
		wantErr string
		check   func(*testing.T, Config)
	}{
		{name: "empty file keeps defaults", yaml: "", check: func(t *testing.T, c Config) {
			if c.Server.Addr != "127.0.0.1:7070" || c.Identity.TokenTTL != 5*time.Minute || c.Identity.Issuer != "http://127.0.0.1:7070" {
				t.Fatalf("defaults: %+v", c)
			}
			if _, ok := c.Identity.TrustDomains["prod"]; !ok {
				t.Fatal("default trust domains missing")
			}
		}},
		{name: "durations and trust domains", yaml: `
identity:
  token_ttl: 10m
  trust_domains:
    acme: {require_dpop: true}
`, check: func(t *testing.T, c Config) {
			if c.Identity.TokenTTL != 10*time.Minute {
				t.Fatalf("ttl %s", c.Identity.TokenTTL)
			}
			if len(c.Identity.TrustDomains) != 1 || !c.Identity.TrustDomains["acme"].RequireDPoP {
				t.Fatalf("trust domains replace the defaults: %+v", c.Identity.TrustDomains)
			}
		}},
		{name: "tls makes an https issuer", yaml: "server: {addr: '10.0.0.5:8443', tls_cert: c.pem, tls_key: k.pem}", check: func(t *testing.T, c Config) {
			if c.Identity.Issuer != "https://10.0.0.5:8443" {
				t.Fatalf("issuer %q", c.Identity.Issuer)
			}
		}},
		{name: "plain HTTP off loopback", yaml: "server: {addr: '10.0.0.5:7070'}", wantErr: "not a loopback address"},
		{name: "plain HTTP off loopback behind a proxy", yaml: "server: {addr: '10.0.0.5:7070', insecure: true}", check: func(t *testing.T, c Config) {
			if c.Identity.Issuer != "http://10.0.0.5:7070" {
				t.Fatalf("issuer %q", c.Identity.Issuer)
			}
		}},
		{name: "a second YAML document", yaml: "log: {level: debug}\n---\nlog: {level: error}", wantErr: "more than one YAML document"},
		{name: "every interface needs an issuer", yaml: "server: {addr: '0.0.0.0:8443', tls_cert: c.pem, tls_key: k.pem}", wantErr: "set the URL agents use"},
		{name: "every interface with an issuer", yaml: "server: {addr: ':8443', tls_cert: c.pem, tls_key: k.pem}\nidentity: {issuer: 'https://warden.example.com/'}", check: func(t *testing.T, c Config) {
			if c.Identity.Issuer != "https://warden.example.com" {
				t.Fatalf("issuer %q", c.Identity.Issuer)
			}
		}},
		{name: "no data directory", yaml: "data: ''", wantErr: "data directory is required"},
		{name: "archive defaults", yaml: "audit: {archive: {dir: /mnt/a}}", check: func(t *testing.T, c Config) {
			if a := c.Audit.Archive; a.KeepLocal != 168*time.Hour || a.Interval != time.Hour || !a.Enabled() {
				t.Fatalf("archive: %+v", a)
			}
		}},
		{name: "archive with PostgreSQL", yaml: "store: postgres://x@db/w\naudit: {archive: {dir: /mnt/a}}", wantErr: "audit.archive is for the embedded log"},
		{name: "archive in two places", yaml: "audit: {archive: {dir: /mnt/a, s3: {endpoint: s3.example.com, bucket: b}}}", wantErr: "dir or s3, not both"},
		{name: "archive over plain HTTP", yaml: "audit: {archive: {s3: {endpoint: 's3.example.com:80', bucket: b, insecure: true}}}", wantErr: "loopback endpoint only"},
		{name: "archive with half its keys", yaml: "audit: {archive: {s3: {endpoint: s3.example.com, bucket: b, access_key_file: /k}}}", wantErr: "go together"},
		{name: "archive without a bucket", yaml: "audit: {archive: {s3: {endpoint: s3.example.com}}}", wantErr: "bucket is required"},
		{name: "tiny segments", yaml: "audit: {segment_entries: 3}", wantErr: "segment_entries 3"},
		{name: "audit defaults", yaml: "", check: func(t *testing.T, c Config) {
			if c.Audit.Mode != "sync" || c.Audit.CheckpointEvery != 1000 || c.Audit.Origin != "127.0.0.1:7070/audit" {
				t.Fatalf("audit: %+v", c.Audit)
			}
		}},
		{name: "audit mode", yaml: "audit: {mode: lazy}", wantErr: "audit.mode"},
		{name: "exporters", yaml: `
audit:
  exporters:
    - {name: soc, type: syslog, address: 'siem.example.com:6514', tls: true, format: cef}
    - {name: hec, type: splunk_hec, url: 'https://splunk.example.com:8088/services/collector/event', token_file: /etc/warden/hec}
    - {name: hook, type: webhook, url: 'https://hooks.example.com/warden', secret_file: /etc/warden/hook}
    - {name: ocsf, type: ocsf, url: 'https://lake.example.com/ingest'}
`, check: func(t *testing.T, c Config) {
			if len(c.Audit.Exporters) != 4 || !c.Audit.Exporters[0].TLS {
				t.Fatalf("exporters: %+v", c.Audit.Exporters)
			}
		}},
		{name: "exporter without a secret", yaml: "audit: {exporters: [{name: hook, type: webhook, url: 'https://h.example/'}]}", wantErr: "secret_file"},
		{name: "exporter of no known type", yaml: "audit: {exporters: [{name: x, type: kafka}]}", wantErr: "want syslog, ocsf, splunk_hec or webhook"},
		{name: "exporters with one name", yaml: "audit: {exporters: [{name: x, type: ocsf, url: 'http://a/'}, {name: x, type: ocsf, url: 'http://b/'}]}", wantErr: "unique name"},
		{name: "exporter with a bad address", yaml: "audit: {exporters: [{name: x, type: syslog, address: siem}]}", wantErr: "want host:port"},
		{name: "exporter with an unknown key", yaml: "audit: {exporters: [{name: x, type: ocsf, url: 'http://a/', token: secret}]}", wantErr: "field token not found"},
		{name: "unknown top-level key", yaml: "stor: postgres://x", wantErr: "field stor not found"},
		{name: "unknown nested key", yaml: "identity: {token_tll: 5m}", wantErr: "field token_tll not found"},
		{name: "ttl over 15 minutes", yaml: "identity: {token_ttl: 16m}", wantErr: "at most max_token_ttl (15m0s)"},
		{name: "max ttl over 15 minutes", yaml: "identity: {max_token_ttl: 1h}", wantErr: "at most 15m0s"},
		{name: "ttl over a lower max", yaml: "identity: {token_ttl: 10m, max_token_ttl: 5m}", wantErr: "at most max_token_ttl (5m0s)"},
		{name: "zero ttl", yaml: "identity: {token_ttl: 0s}", wantErr: "token_ttl"},
		{name: "not a duration", yaml: "identity: {token_ttl: soon}", wantErr: "soon"},
		{name: "bad trust domain", yaml: "identity: {trust_domains: {Prod: {}}}", wantErr: `"Prod" is not a valid trust domain`},
		{name: "no trust domains", yaml: "identity: {trust_domains: {}}", wantErr: "at least one trust domain"},
		{name: "half of tls", yaml: "server: {tls_cert: c.pem}", wantErr: "tls_cert and tls_key go together"},
		{name: "bad log level", yaml: "log: {level: loud}", wantErr: "log.level"},
		{name: "bad store", yaml: "store: mysql://x", wantErr: "postgres:// URL"},
		{name: "bad addr", yaml: "server: {addr: '7070'}", wantErr: "want host:port"},
		{name: "not yaml", yaml: "identity: [", wantErr: "config test.yaml"},
		{name: "record defaults", yaml: "", check: func(t *testing.T, c Config) {
			r := c.Decide.RecordConfig()
			if r.NoDefaultKeys || r.MaxValueBytes != 4096 || r.MaxInputBytes != 65536 {
				t.Fatalf("record: %+v", r)
			}
		}},
		{name: "redact paths into arrays", yaml: "decide: {redact: ['args.items[*].password', 'args.rows[0].ssn'], keep: [args.next_token], redact_keys: [ssn], redact_default_keys: false}", check: func(t *testing.T, c Config) {
			if r := c.Decide.RecordConfig(); !r.NoDefaultKeys || len(r.Paths) != 2 || r.Keys[0] != "ssn" || r.Keep[0] != "args.next_token" {
				t.Fatalf("record: %+v", r)
			}
		}},
		{name: "bad redact path", yaml: "decide: {redact: ['args.items[']}", wantErr: "decide: redact path"},
		{name: "keep outside args", yaml: "decide: {keep: [context.source.ip]}", wantErr: "in args only"},
		{name: "value cap too small", yaml: "decide: {record_max_value_bytes: 16}", wantErr: "largest value"},
		{name: "no input cap", yaml: "decide: {record_max_input_bytes: 0}", wantErr: "must be positive"},
		{name: "request budget", yaml: "decide: {request_budget: 250ms}", check: func(t *testing.T, c Config) {
			if c.Decide.RequestBudget != 250*time.Millisecond {
				t.Fatalf("budget %s", c.Decide.RequestBudget)
			}
		}},
		{name: "request budget under the policy timeout", yaml: "policy: {timeout: 100ms}\ndecide: {request_budget: 50ms}", wantErr: "decide.request_budget"},
		{name: "request budget too long", yaml: "decide: {request_budget: 2m}", wantErr: "decide.request_budget"},
		{name: "request budget follows a long policy timeout", yaml: "policy: {timeout: 3s}", check: func(t *testing.T, c Config) {
			if c.Decide.RequestBudget != 3*time.Second {
				t.Fatalf("budget %s", c.Decide.RequestBudget)
			}
		}},
		{name: "request budget default", yaml: "", check: func(t *testing.T, c Config) {
			if c.Decide.RequestBudget != time.Second {
				t.Fatalf("budget %s", c.Decide.RequestBudget)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg := Default()
			err := Decode(&cfg, []byte(c.yaml), "test.yaml")
			if err == nil {
				err = cfg.Validate()
			}
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, cfg)
		})
	}
}

func TestApplyEnv(t *testing.T) {
	t.Parallel()
	cfg := Default()
	env := map[string]string{"WARDEN_ADDR": "127.0.0.1:9999", "WARDEN_STORE": "postgres://h/db", "WARDEN_INSECURE": "true", "WARDEN_UNRELATED": "x"}
	if err := ApplyEnv(&cfg, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Addr != "127.0.0.1:9999" || cfg.Store != "postgres://h/db" || !cfg.Server.Insecure {
		t.Fatalf("env not applied: %+v", cfg)
	}
	env["WARDEN_INSECURE"] = "maybe"
	if err := ApplyEnv(&cfg, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err == nil || !strings.Contains(err.Error(), "WARDEN_INSECURE") {
		t.Fatalf("bad bool: %v", err)
	}
}

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"127.0.0.1:7070": true, "[::1]:7070": true, "localhost:7070": true, "127.0.0.2:1": true,
		"0.0.0.0:7070": false, ":7070": false, "10.0.0.1:7070": false, "example.com:7070": false, "[::]:7070": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// A secret variable set but empty is a mistake (an empty Secret, say), not
// "unset": with the master key, it would make a new key where none
// should be.
func TestEmptySecretVariables(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"WARDEN_MASTER_KEY", "WARDEN_ADMIN_TOKEN"} {
		t.Run(name, func(t *testing.T) {
			cfg := Default()
			err := ApplyEnv(&cfg, func(k string) (string, bool) {
				if k == name {
					return " ", true
				}
				return "", false
			})
			if err == nil || !strings.Contains(err.Error(), name+" is set but empty") {
				t.Fatalf("%v", err)
			}
		})
	}
}

// The console is on by default for a server on loopback only.
func TestConsoleDefault(t *testing.T) {
	t.Parallel()
	on, off := true, false
	for _, c := range []struct {
		c    Console
		addr string
		want bool
	}{{Console{}, "127.0.0.1:7070", true}, {Console{}, "[::1]:7070", true}, {Console{}, "10.0.0.5:8443", false},
		{Console{Enabled: &on}, "10.0.0.5:8443", true}, {Console{Enabled: &off}, "127.0.0.1:7070", false}} {
		if got := c.c.On(c.addr); got != c.want {
			t.Errorf("%+v on %s: %v", c.c, c.addr, got)
		}
	}
}
