package cli

import (
	"fmt"
	"github.com/warden-run/warden/internal/app"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-run/warden/internal/demo"
)

func newDemoCmd(g *globals) *cobra.Command {
	var (
		keep bool
		data string
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run Warden end to end: three scenarios and the attacks that must fail",
		Long: `Start a Warden server and an MCP gateway in this process, on a temporary data
directory, with small MCP servers behind the gateway. Register agents for three
scenarios (a finance trading agent, a radiology agent, plant maintenance
agents), activate the shipped policy bundles one after the other, and drive
their traffic through the gateway with the official MCP Go SDK client: normal
work, and attacks that must fail. Print every step, its outcome and its
reason (read from the audit log), then verify the audit log.

--keep-running leaves everything up to explore; Ctrl-C stops it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			began := time.Now()
			d, err := demo.Start(ctx, demo.Options{Data: data, Log: g.errOut})
			if err != nil {
				return err
			}
			defer d.Close()
			ok, err := d.Play(ctx, g.out)
			if err != nil {
				return err
			}
			if err := d.AwaitCheckpoint(ctx); err != nil {
				return err
			}
			wardenData := filepath.Join(d.Data, "warden")
			fmt.Fprintf(g.out, "\nwarden audit verify\n  ")
			verified := Main(ctx, []string{"--server", d.URL, "--data", wardenData, "audit", "verify"}, g.out, g.errOut) == 0
			fmt.Fprintf(g.out, "\nDone in %.1f s.\n", time.Since(began).Seconds())
			if !ok || !verified {
				fmt.Fprintln(g.out, "Some steps did not go as expected (marked above).")
				return exitError(1)
			}
			if keep {
				fmt.Fprintf(g.out, "\nStill running. Try:\n  warden --server %s --data %s audit tail\n  warden --server %s --data %s agent list\nMCP gateway: %s (tokens for it: resource=%s)\nWeb console: %s/ui/ (sign in with the admin token in %s)\nCtrl-C to stop.\n",
					d.URL, wardenData, d.URL, wardenData, d.GatewayURL, d.GatewayURL, d.URL, filepath.Join(wardenData, app.AdminTokenFileName))
				<-ctx.Done()
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&keep, "keep-running", false, "leave the server and gateway running after the scenarios")
	cmd.Flags().StringVar(&data, "demo-data", "", "data directory to use and keep (default: a temporary one, removed at the end)")
	return cmd
}
