package cli

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/config"
)

func newGatewayCmd(g *globals) *cobra.Command {
	var gatewayFile, wardenFile, storeDSN string
	cmd := &cobra.Command{
		Use:   "gateway --config gateway.yaml --warden-config warden.yaml",
		Short: "Run the MCP gateway (and HTTP proxy, Envoy ext_authz) as its own process",
		Long: `Run the enforcement points of gateway.yaml in a process of their own: the MCP
gateway, the HTTP reverse proxy and the Envoy external authorization server.

The gateway decides in its own process, as one more replica of the Warden
servers: it needs their PostgreSQL store (--store or store: in the Warden
configuration) and the same identity settings (issuer, trust domains) and
master key. On the embedded store, run the gateway inside the server
instead: warden serve --gateway gateway.yaml.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if gatewayFile == "" {
				return errors.New("--config gateway.yaml is required")
			}
			var logCfg config.Log
			return startError(g, &logCfg, func() error {
				cfg, err := loadConfig(wardenFile)
				if err != nil {
					return err
				}
				logCfg = cfg.Log
				if cmd.Flags().Changed("data") {
					cfg.Data = g.data
				}
				if storeDSN != "" {
					cfg.Store = storeDSN
				}
				if !strings.HasPrefix(cfg.Store, "postgres://") && !strings.HasPrefix(cfg.Store, "postgresql://") {
					return errors.New("a gateway of its own decides as a replica and needs the Warden servers' PostgreSQL store (--store postgres://...); on the embedded store run it inside the server: warden serve --gateway gateway.yaml")
				}
				if cfg.Identity.Issuer == "" {
					return errors.New("identity.issuer must be set: the URL of the Warden servers, which issued the agents' tokens")
				}
				cfg.Gateway = gatewayFile
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
				if os.Getenv("GOGC") == "" {
					debug.SetGCPercent(400) // as warden serve: see there
				}
				log := newLogger(cfg.Log, g.errOut)
				ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				if err := addressFree(gw.Listen); err != nil {
					return fmt.Errorf("gateway: %w", err)
				}
				fresh := !exists(cfg.Data)
				a, err := app.New(ctx, cfg, log)
				if err != nil {
					discardFresh(cfg, fresh, log)
					return err
				}
				defer a.Close()
				gateway, err := a.NewGateway(*gw)
				if err != nil {
					return err
				}
				return a.RunGateway(ctx, gateway, nil)
			}())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&gatewayFile, "config", "", "the gateway's configuration (gateway.yaml)")
	fl.StringVar(&wardenFile, "warden-config", "", "the Warden servers' configuration (warden.yaml; env WARDEN_CONFIG)")
	fl.StringVar(&storeDSN, "store", "", "the Warden servers' PostgreSQL store, postgres://...")
	return cmd
}
