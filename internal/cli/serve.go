package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/config"
)

func newServeCmd(g *globals) *cobra.Command {
	var (
		configFile string
		f          config.Config
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the control plane: identity, decisions, audit log and admin API",
		Long: `Run the control plane on --addr (default 127.0.0.1:7070).

Settings come from, lowest first: defaults, the --config file (warden.yaml),
WARDEN_* environment variables, then flags. On a non-loopback address the
server refuses plain HTTP unless --tls-cert and --tls-key are given, or
--insecure when a TLS proxy fronts it. On the first start it writes a
bootstrap admin token to <data>/admin.token (mode 0600).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var logCfg config.Log
			return startError(g, &logCfg, func() error {
				cfg, err := loadConfig(configFile)
				if err != nil {
					return err
				}
				logCfg = cfg.Log
				fl := cmd.Flags()
				set := func(name string, apply func()) {
					if fl.Changed(name) {
						apply()
					}
				}
				set("data", func() { cfg.Data = g.data })
				set("addr", func() { cfg.Server.Addr = f.Server.Addr })
				set("store", func() { cfg.Store = f.Store })
				set("tls-cert", func() { cfg.Server.TLSCert = f.Server.TLSCert })
				set("tls-key", func() { cfg.Server.TLSKey = f.Server.TLSKey })
				set("insecure", func() { cfg.Server.Insecure = f.Server.Insecure })
				set("issuer", func() { cfg.Identity.Issuer = f.Identity.Issuer })
				set("log-level", func() { cfg.Log.Level = f.Log.Level })
				set("log-format", func() { cfg.Log.Format = f.Log.Format })
				set("policies", func() { cfg.Policy.Dir = f.Policy.Dir })
				set("watch", func() { cfg.Policy.Watch = f.Policy.Watch })
				set("gateway", func() { cfg.Gateway = f.Gateway })
				set("update-shared-settings", func() { cfg.UpdateSharedSettings = f.UpdateSharedSettings })
				logCfg = cfg.Log
				if cfg.Policy.TestWorker, err = testWorker(); err != nil {
					return err
				}
				gw, err := app.LoadGateway(&cfg)
				if err != nil {
					return err
				}
				if err := cfg.Validate(); err != nil {
					return usageError{fmt.Errorf("configuration:\n%w", err)}
				}
				log := newLogger(cfg.Log, g.errOut)
				if os.Getenv("GOGC") == "" {
					// Policy evaluation allocates a lot of short-lived memory;
					// collecting at 4x the live heap instead of 2x costs some
					// tens of MB and saves a fifth of the CPU. GOGC overrides.
					debug.SetGCPercent(400)
				}

				// The address and the certificate first: a start that cannot have
				// them makes nothing.
				if c := cfg.Server; c.TLSCert != "" {
					if _, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
						return usageError{fmt.Errorf("TLS: %w", err)}
					}
				}
				ln, err := net.Listen("tcp", cfg.Server.Addr)
				if err != nil {
					return err
				}
				defer ln.Close()
				if gw != nil {
					if err := addressFree(gw.Listen); err != nil {
						return fmt.Errorf("gateway: %w", err)
					}
				}
				ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				fresh := !exists(cfg.Data)
				a, err := app.New(ctx, cfg, log)
				if err != nil {
					discardFresh(cfg, fresh, log)
					return err
				}
				defer a.Close()
				if a.AdminTokenFile != "" {
					if cfg.Log.Format == "json" {
						log.Info("bootstrap admin token written (mode 0600); the CLI reads it from there; keep it secret", "path", a.AdminTokenFile)
					} else {
						fmt.Fprintf(g.errOut, "Bootstrap admin token written to %s (mode 0600). The CLI reads it from there; keep it secret.\n", a.AdminTokenFile)
					}
				}
				if gw == nil {
					return a.Serve(ctx, ln, nil)
				}
				gateway, err := a.NewGateway(*gw)
				if err != nil {
					return err
				}
				// Either server ending ends both.
				ctx, cancel := context.WithCancel(ctx)
				defer cancel()
				errc := make(chan error, 2)
				go func() { errc <- a.Serve(ctx, ln, nil); cancel() }()
				go func() { errc <- a.RunGateway(ctx, gateway, nil); cancel() }()
				return errors.Join(<-errc, <-errc)
			}())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&configFile, "config", "", "configuration file (env WARDEN_CONFIG)")
	fl.StringVar(&f.Server.Addr, "addr", "127.0.0.1:7070", "listen address")
	fl.StringVar(&f.Store, "store", "", "postgres://... for a shared PostgreSQL; empty for SQLite in the data directory")
	fl.StringVar(&f.Server.TLSCert, "tls-cert", "", "TLS certificate file (PEM)")
	fl.StringVar(&f.Server.TLSKey, "tls-key", "", "TLS private key file (PEM)")
	fl.BoolVar(&f.Server.Insecure, "insecure", false, "allow plain HTTP on a non-loopback address")
	fl.StringVar(&f.Identity.Issuer, "issuer", "", "public URL of this server (default derived from --addr)")
	fl.StringVar(&f.Log.Level, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&f.Log.Format, "log-format", "text", "text or json")
	fl.StringVar(&f.Policy.Dir, "policies", "", "policy bundle directory: pushed and activated at start if its tests pass")
	fl.BoolVar(&f.Policy.Watch, "watch", false, "with --policies: push and activate the directory again when it changes")
	fl.StringVar(&f.Gateway, "gateway", "", "MCP gateway configuration (gateway.yaml): run the gateway in this process")
	fl.BoolVar(&f.UpdateSharedSettings, "update-shared-settings", false,
		"record this server's issuer, audience, trust domains and taints.expire_after as the settings every replica must share, replacing those recorded (stop the other replicas first; the audit origin is the log's and cannot change)")
	return cmd
}

// loadConfig is the configuration from, lowest first, the defaults, file
// (or WARDEN_CONFIG's) and the WARDEN_* environment variables.
func loadConfig(file string) (config.Config, error) {
	cfg := config.Default()
	if file == "" {
		file = os.Getenv("WARDEN_CONFIG")
	}
	if file != "" {
		if err := config.LoadFile(&cfg, file); err != nil {
			return cfg, err
		}
	}
	return cfg, config.ApplyEnv(&cfg, os.LookupEnv)
}

func newLogger(c config.Log, w interface{ Write([]byte) (int, error) }) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// startError is how a server that could not start (or stopped) reports
// why: under --log-format json as one more JSON log line, so that every
// line of the process is JSON, with the exit status; otherwise as the
// command line reports any error.
func startError(g *globals, lc *config.Log, err error) error {
	if err == nil || lc.Format != "json" {
		return err
	}
	var ee exitError
	if errors.As(err, &ee) {
		return err
	}
	status := exitStatus(err)
	newLogger(*lc, g.errOut).Error("warden stopped", "err", err.Error(), "status", status)
	return exitError(status)
}

// exists reports whether path exists.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// addressFree reports whether addr can be listened on now.
func addressFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ln.Close()
}

// discardFresh removes the data directory a failed first start made,
// so that the next start is a first start again rather than one over half
// a deployment: all of it with the embedded store, which lives there; with
// PostgreSQL only when it is still empty, since a master key the store
// has been bound to must never be lost.
func discardFresh(cfg config.Config, fresh bool, log *slog.Logger) {
	if !fresh {
		return
	}
	if cfg.Store == "" {
		if err := os.RemoveAll(cfg.Data); err == nil {
			log.Info("the data directory this first start made is removed", "path", cfg.Data)
		}
		return
	}
	if os.Remove(cfg.Data) != nil && exists(cfg.Data) {
		log.Warn("this first start failed after writing to the data directory; keep it: the store may be bound to its master key", "path", cfg.Data)
	}
}
