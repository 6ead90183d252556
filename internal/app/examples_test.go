package app_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/config"
)

// examples is the repository's examples directory.
var examples = filepath.Join("..", "..", "examples")

// exampleConfig reads an example warden.yaml as `warden serve --config`
// does, with env as its environment.
func exampleConfig(t *testing.T, path string, env map[string]string) config.Config {
	t.Helper()
	cfg := config.Default()
	if err := config.LoadFile(&cfg, path); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if err := config.ApplyEnv(&cfg, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cfg
}

// The example configurations are what the server and the gateway accept:
// each loads and validates, and the gateway's parses and checks.
func TestExampleConfigurationsLoad(t *testing.T) {
	t.Parallel()
	env := map[string]string{"WARDEN_DATA": t.TempDir(), "WARDEN_STORE": "postgres://warden:secret@db:5432/warden",
		"WARDEN_MASTER_KEY": strings.Repeat("ab", 32), "WARDEN_ADMIN_TOKEN": "wdn_admin_" + strings.Repeat("x", 40)}
	for _, path := range []string{filepath.Join(examples, "warden.yaml"), filepath.Join(examples, "kubernetes", "warden.yaml")} {
		t.Run(path, func(t *testing.T) {
			cfg := exampleConfig(t, path, env)
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			// What the containers give as variables reaches the settings.
			if cfg.Store != env["WARDEN_STORE"] || cfg.Identity.MasterKey != env["WARDEN_MASTER_KEY"] || cfg.AdminToken != env["WARDEN_ADMIN_TOKEN"] || cfg.Data != env["WARDEN_DATA"] {
				t.Errorf("the environment did not reach the settings: store %q, data %q", cfg.Store, cfg.Data)
			}
		})
	}
	if _, err := app.LoadGatewayConfig(filepath.Join(examples, "gateway.yaml")); err != nil {
		t.Errorf("gateway.yaml: %v", err)
	}
}

// examples/warden.yaml runs: a server from it, on a fresh PostgreSQL
// database, with the master key and the first admin token from the
// environment as the containers give them, answers its admin API with
// that token, and a second replica with the same file and key joins it.
func TestExampleConfigurationRuns(t *testing.T) {
	t.Parallel()
	dsn := os.Getenv("WARDEN_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("set WARDEN_TEST_POSTGRES to run examples/warden.yaml on PostgreSQL")
	}
	key := make([]byte, 32)
	rand.Read(key)
	token := "wdn_admin_" + hex.EncodeToString(key[:16]) + hex.EncodeToString(key[16:])
	mk := make([]byte, 32)
	rand.Read(mk)
	db := apptest.FreshPostgres(t, dsn)
	start := func(name string) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg := exampleConfig(t, filepath.Join(examples, "warden.yaml"), map[string]string{"WARDEN_DATA": filepath.Join(t.TempDir(), name),
			"WARDEN_STORE": db, "WARDEN_MASTER_KEY": hex.EncodeToString(mk), "WARDEN_ADMIN_TOKEN": token, "WARDEN_ADDR": ln.Addr().String()})
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		a, err := app.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		srv := &http.Server{Handler: a.Handler, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close(); a.Close() })
		if a.AdminTokenFile != "" {
			t.Errorf("%s wrote an admin token file with the token given", name)
		}
		if _, err := os.Stat(cfg.Identity.MasterKeyFile); err == nil {
			t.Errorf("%s wrote a master key file with the key given", name)
		}
		return "http://" + ln.Addr().String()
	}
	for _, url := range []string{start("replica-1"), start("replica-2")} {
		for _, c := range []struct {
			name, token string
			want        int
		}{{"the token given", token, http.StatusOK}, {"another", "wdn_admin_" + strings.Repeat("0", 64), http.StatusUnauthorized}} {
			req, _ := http.NewRequest("GET", url+"/v1/agents", nil)
			req.Header.Set("Authorization", "Bearer "+c.token)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != c.want {
				t.Errorf("%s, %s: %d, want %d", url, c.name, res.StatusCode, c.want)
			}
		}
	}
}

// The container image, compose file, systemd unit and Kubernetes
// manifests keep the properties docs/operations.md promises: a static
// binary run without privileges on a read-only root, probes on the health
// endpoints, secrets from the environment the configuration reads.
func TestDeploymentExamples(t *testing.T) {
	t.Parallel()
	read := func(path string) []byte {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Every variable the examples set is one the configuration reads.
	known := func(name string) bool {
		cfg := config.Default()
		before := cfg
		config.ApplyEnv(&cfg, func(k string) (string, bool) {
			if k == name {
				return "1", true
			}
			return "", false
		})
		return !equalConfig(before, cfg)
	}

	t.Run("Dockerfile", func(t *testing.T) {
		df := string(read(filepath.Join("..", "..", "Dockerfile")))
		for _, want := range []string{"CGO_ENABLED=0", "USER 65532:65532", "ENV WARDEN_DATA=/var/lib/warden/data"} {
			if !strings.Contains(df, want) {
				t.Errorf("Dockerfile: no %q", want)
			}
		}
		if n := len(regexp.MustCompile(`(?m)^FROM `).FindAllString(df, -1)); n != 2 {
			t.Errorf("Dockerfile: %d stages, want a build stage and a run stage", n)
		}
	})

	t.Run("compose", func(t *testing.T) {
		var f struct {
			Services map[string]struct {
				Command     []string
				Environment map[string]string
				ReadOnly    bool     `yaml:"read_only"`
				CapDrop     []string `yaml:"cap_drop"`
				Volumes     []string
			}
		}
		if err := yaml.Unmarshal(read(filepath.Join(examples, "compose", "compose.yaml")), &f); err != nil {
			t.Fatal(err)
		}
		replicas := 0
		for name, s := range f.Services {
			if !strings.HasPrefix(name, "warden") {
				continue
			}
			replicas++
			if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") {
				t.Errorf("%s: read_only %v, cap_drop %v", name, s.ReadOnly, s.CapDrop)
			}
			for v := range s.Environment {
				if !known(v) {
					t.Errorf("%s: %s is not a variable Warden reads", name, v)
				}
			}
			for _, v := range s.Volumes {
				if src, _, _ := strings.Cut(v, ":"); strings.HasPrefix(src, ".") {
					if _, err := os.Stat(filepath.Join(examples, "compose", src)); err != nil {
						t.Errorf("%s mounts %s: %v", name, src, err)
					}
				}
			}
		}
		if replicas != 2 {
			t.Errorf("%d replicas", replicas)
		}
	})

	t.Run("systemd", func(t *testing.T) {
		unit := string(read(filepath.Join(examples, "systemd", "warden.service")))
		for _, want := range []string{"ExecStart=/usr/local/bin/warden serve --config /etc/warden/warden.yaml", "NoNewPrivileges=yes",
			"ProtectSystem=strict", "DynamicUser=yes", "StateDirectoryMode=0700", "CapabilityBoundingSet=\n"} {
			if !strings.Contains(unit, want) {
				t.Errorf("warden.service: no %q", want)
			}
		}
		// The policy test worker lowers its own RLIMIT_DATA: a filter
		// that forbids setrlimit would kill it.
		for _, line := range strings.Split(unit, "\n") {
			if strings.HasPrefix(line, "SystemCallFilter=~") && strings.Contains(line, "@resources") {
				t.Errorf("warden.service: %s", line)
			}
		}
		// systemd's own check of every directive, with a program that exists.
		if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
			exe, _ := os.Executable()
			path := filepath.Join(t.TempDir(), "warden.service")
			os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/local/bin/warden", exe)), 0o644)
			if out, err := exec.Command(analyze, "verify", path).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Errorf("systemd-analyze verify: %v\n%s", err, out)
			}
		} else {
			t.Log("no systemd-analyze: the unit's directives are not checked by systemd")
		}
	})

	t.Run("kubernetes", func(t *testing.T) {
		dir := filepath.Join(examples, "kubernetes")
		docs := [][]byte{read(filepath.Join(dir, "deployment.yaml")), read(filepath.Join(dir, "service.yaml")), read(filepath.Join(dir, "pdb.yaml")),
			read(filepath.Join(dir, "networkpolicy.yaml"))}
		if kubectl, err := exec.LookPath("kubectl"); err == nil {
			out, err := exec.Command(kubectl, "kustomize", dir).CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl kustomize: %v\n%s", err, out)
			}
			docs = bytes.Split(out, []byte("\n---\n"))
		} else {
			t.Log("no kubectl: the manifests are checked without kustomize rendering them")
		}
		kinds := map[string]int{}
		for _, d := range docs {
			var obj map[string]any
			if err := yaml.Unmarshal(d, &obj); err != nil {
				t.Fatal(err)
			}
			kind, _ := obj["kind"].(string)
			kinds[kind]++
			if kind == "Deployment" {
				checkDeployment(t, obj, known)
			}
		}
		for _, k := range []string{"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"} {
			if kinds[k] != 1 {
				t.Errorf("%d %s", kinds[k], k)
			}
		}
	})
}

func checkDeployment(t *testing.T, obj map[string]any, known func(string) bool) {
	t.Helper()
	var d struct {
		Spec struct {
			Replicas int
			Template struct {
				Spec struct {
					SecurityContext struct {
						RunAsNonRoot bool `yaml:"runAsNonRoot"`
					} `yaml:"securityContext"`
					Containers []struct {
						Env []struct {
							Name string
						}
						SecurityContext struct {
							ReadOnlyRootFilesystem   bool `yaml:"readOnlyRootFilesystem"`
							AllowPrivilegeEscalation bool `yaml:"allowPrivilegeEscalation"`
						} `yaml:"securityContext"`
						ReadinessProbe struct {
							HTTPGet struct{ Path string } `yaml:"httpGet"`
						} `yaml:"readinessProbe"`
						LivenessProbe struct {
							HTTPGet struct{ Path string } `yaml:"httpGet"`
						} `yaml:"livenessProbe"`
					}
				}
			}
		}
	}
	b, _ := yaml.Marshal(obj)
	if err := yaml.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.Spec.Replicas < 2 || !d.Spec.Template.Spec.SecurityContext.RunAsNonRoot || len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("deployment: %+v", d.Spec)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if !c.SecurityContext.ReadOnlyRootFilesystem || c.SecurityContext.AllowPrivilegeEscalation {
		t.Errorf("container security: %+v", c.SecurityContext)
	}
	if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("probes: readiness %q, liveness %q", c.ReadinessProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path)
	}
	for _, e := range c.Env {
		if !known(e.Name) {
			t.Errorf("deployment: %s is not a variable Warden reads", e.Name)
		}
	}
}

// equalConfig compares the settings the environment can change.
func equalConfig(a, b config.Config) bool {
	return a.Data == b.Data && a.Store == b.Store && a.Server == b.Server && a.Gateway == b.Gateway && a.Identity.Issuer == b.Identity.Issuer &&
		a.Identity.MasterKey == b.Identity.MasterKey && a.AdminToken == b.AdminToken && a.Log == b.Log
}
