package app_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/store"
)

// TestRestartWithOtherSharedSettingsIsRefused is the regression test of
// replicas with different settings starting anyway, on the embedded store:
// a restart with another issuer, DPoP requirement, trust domains or audit
// origin refuses to start and says which setting differs and how to
// change it deliberately; --update-shared-settings changes it, recorded.
func TestRestartWithOtherSharedSettingsIsRefused(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	base := func() config.Config {
		cfg := config.Default()
		cfg.Data = data
		cfg.Server.Addr = "127.0.0.1:0"
		cfg.Identity.Issuer = "https://warden-a.test"
		cfg.Audit.Origin = "warden.test/audit"
		return cfg
	}
	start := func(t *testing.T, cfg config.Config) (*app.App, error) {
		t.Helper()
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		return app.New(context.Background(), cfg, quiet())
	}
	first, err := start(t, base())
	if err != nil {
		t.Fatal(err)
	}
	first.Close()

	cases := []struct {
		name string
		edit func(*config.Config)
		says []string
	}{
		{"another issuer", func(c *config.Config) { c.Identity.Issuer = "https://warden-b.test" },
			[]string{`identity.issuer: the deployment has "https://warden-a.test", this replica "https://warden-b.test"`}},
		{"another audience", func(c *config.Config) { c.Identity.Audience = "other" }, []string{"identity.audience"}},
		{"DPoP no longer required in prod", func(c *config.Config) {
			c.Identity.TrustDomains = map[string]config.TrustDomain{"prod": {}, "staging": {}, "dev": {}}
		}, []string{"identity.trust_domains.prod.require_dpop: the deployment has true, this replica false"}},
		{"a trust domain more and one less", func(c *config.Config) {
			c.Identity.TrustDomains = map[string]config.TrustDomain{"prod": {RequireDPoP: true}, "staging": {}, "mars": {}}
		}, []string{`the deployment declares "dev", this replica does not`, `this replica declares "mars", the deployment does not`}},
		{"another audit origin", func(c *config.Config) { c.Audit.Origin = "elsewhere.test/audit" }, []string{"audit.origin"}},
		{"another taint expiry", func(c *config.Config) { c.Taints.ExpireAfter = 0 }, []string{`taints.expire_after: the deployment has "1h0m0s", this replica "0s"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := base()
			c.edit(&cfg)
			a, err := start(t, cfg)
			if err == nil {
				a.Close()
				t.Fatal("started with settings that differ from the deployment's")
			}
			if !errors.Is(err, identity.ErrSharedSettings) || !strings.Contains(err.Error(), identity.UpdateSharedSettingsFlag) {
				t.Fatalf("refusal does not say how to change the settings: %v", err)
			}
			for _, s := range c.says {
				if !strings.Contains(err.Error(), s) {
					t.Fatalf("refusal does not say %q:\n%v", s, err)
				}
			}
		})
	}

	// The audit log's name cannot be changed, even deliberately.
	cfg := base()
	cfg.Audit.Origin = "elsewhere.test/audit"
	cfg.UpdateSharedSettings = true
	if a, err := start(t, cfg); err == nil || !strings.Contains(err.Error(), "set audit.origin: warden.test/audit") {
		if a != nil {
			a.Close()
		}
		t.Fatalf("an update of the audit origin: %v", err)
	}
	// A deliberate change of issuer: recorded, then the rule for every start.
	cfg = base()
	cfg.Identity.Issuer = "https://warden-b.test"
	cfg.UpdateSharedSettings = true
	b, err := start(t, cfg)
	if err != nil {
		t.Fatalf("--update-shared-settings: %v", err)
	}
	evs, err := b.Store.Events(context.Background(), store.EventFilter{Target: "shared_settings"})
	b.Close()
	if err != nil || len(evs) != 1 || evs[0].Action != "settings.update" || !strings.Contains(string(evs[0].Detail), "warden-b.test") {
		t.Fatalf("the change was not recorded: %+v %v", evs, err)
	}
	if a, err := start(t, base()); err == nil || !strings.Contains(err.Error(), `the deployment has "https://warden-b.test"`) {
		if a != nil {
			a.Close()
		}
		t.Fatalf("a start with the old issuer after the change: %v", err)
	}
	cfg.UpdateSharedSettings = false
	if a, err := start(t, cfg); err != nil {
		t.Fatalf("a start with the new settings: %v", err)
	} else {
		a.Close()
	}
}

// TestSecondReplicaWithAnotherIssuerIsRefused is the regression test on
// PostgreSQL: a second replica of the same store started without --issuer
// (so with its own address as issuer) came up with another issuer and only
// a warning. It now refuses to start; with the deployment's issuer it runs.
func TestSecondReplicaWithAnotherIssuerIsRefused(t *testing.T) {
	t.Parallel()
	dsn := os.Getenv("WARDEN_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("set WARDEN_TEST_POSTGRES to run the replica test against PostgreSQL")
	}
	db := apptest.FreshPostgres(t, dsn)
	master := filepath.Join(t.TempDir(), "master.key")
	first := apptest.Start(t, func(c *config.Config) { c.Store, c.Identity.MasterKeyFile = db, master })

	cfg := config.Default()
	cfg.Data = filepath.Join(t.TempDir(), "second")
	cfg.Store, cfg.Identity.MasterKeyFile = db, master
	cfg.Server.Addr = "127.0.0.1:7399" // no --issuer: the issuer is derived from this address
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if a, err := app.New(context.Background(), cfg, quiet()); err == nil {
		a.Close()
		t.Fatal("a second replica with another issuer started")
	} else if !errors.Is(err, identity.ErrSharedSettings) ||
		!strings.Contains(err.Error(), `identity.issuer: the deployment has "`+first.URL+`", this replica "http://127.0.0.1:7399"`) ||
		!strings.Contains(err.Error(), "audit.origin") {
		t.Fatalf("unclear refusal: %v", err)
	}
	cfg.Identity.Issuer, cfg.Audit.Origin = first.Config.Identity.Issuer, first.Config.Audit.Origin
	a, err := app.New(context.Background(), cfg, quiet())
	if err != nil {
		t.Fatalf("a second replica with the deployment's settings: %v", err)
	}
	a.Close()
}
