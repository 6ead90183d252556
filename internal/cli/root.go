// Package cli is the warden command line: thin cobra commands over the
// packages that do the work, each printing text or, with --format json, JSON.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Main runs the warden command line and returns the process exit status.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			return int(ee)
		}
		fmt.Fprintln(stderr, "warden:", visibleLines(err.Error()))
		return 1
	}
	return 0
}

// exitError ends the command with a status and no further message.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// globals are the flags every command shares.
type globals struct {
	out, errOut    io.Writer
	format         string
	server         string
	adminTokenFile string
	data           string
	sessionFile    string
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{out: stdout, errOut: stderr}
	root := &cobra.Command{
		Use:           "warden",
		Short:         "Zero-trust security for AI agents",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if g.format != "text" && g.format != "json" {
				return fmt.Errorf("--format %q: want text or json", g.format)
			}
			return nil
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.format, "format", "text", "output format: text or json")
	pf.StringVar(&g.server, "server", envOr("WARDEN_SERVER", "http://127.0.0.1:7070"), "Warden server URL (env WARDEN_SERVER)")
	pf.StringVar(&g.adminTokenFile, "admin-token-file", "", "file holding the admin token (without it: env WARDEN_ADMIN_TOKEN, else your 'warden login' session, else <data>/admin.token)")
	pf.StringVar(&g.sessionFile, "session-file", envOr("WARDEN_SESSION_FILE", defaultSessionFile()), "where 'warden login' keeps your sessions (env WARDEN_SESSION_FILE)")
	pf.StringVar(&g.data, "data", envOr("WARDEN_DATA", "./warden-data"), "data directory (env WARDEN_DATA)")

	root.AddCommand(newServeCmd(g), newAgentCmd(g), newTokenCmd(g), newKeysCmd(g), newEventsCmd(g), newAuditCmd(g), newPolicyCmd(g), newPEPCmd(g), newIncidentCmd(g), newApprovalCmd(g), newVoteCmd(g, "approve"), newVoteCmd(g, "reject"), newLoginCmd(g), newGrantCmd(g), newLogoutCmd(g), newWhoamiCmd(g), newAccessCmd(g), newMonitorCmd(g), newGatewayCmd(g), newMCPCmd(g), newDemoCmd(g), newVersionCmd(g))
	return root
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
