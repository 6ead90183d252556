// Package cli is the warden command line: thin cobra commands over the
// packages that do the work, each printing text or, with --format json, JSON.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Main runs the warden command line and returns the process exit status.
// Errors go to stderr, as a line of text or, under --format json, as
// {"error": {"code", "message", "status"}}; the status says what kind of
// failure it was (exit.go).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root, g := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	status := exitStatus(err)
	var ee exitError
	if err == nil || errors.As(err, &ee) { // the command said what it had to
		return status
	}
	// A command line that did not parse may not have reached --format.
	if g.format == "json" || asksJSON(args) {
		b, _ := json.Marshal(map[string]any{"error": map[string]any{"code": errorCode(status), "message": err.Error(), "status": status}})
		fmt.Fprintln(stderr, string(b))
	} else {
		fmt.Fprintln(stderr, "warden:", visibleLines(strings.ReplaceAll(err.Error(), "\t", "  ")))
	}
	return status
}

// asksJSON reports whether args ask for --format json.
func asksJSON(args []string) bool {
	for i, a := range args {
		if a == "--format=json" || a == "--format" && i+1 < len(args) && args[i+1] == "json" {
			return true
		}
	}
	return false
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

func newRoot(stdout, stderr io.Writer) (*cobra.Command, *globals) {
	g := &globals{out: stdout, errOut: stderr}
	root := &cobra.Command{
		Use:           "warden",
		Short:         "Zero-trust security for AI agents",
		Version:       version(),
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
	root.SetVersionTemplate("warden {{.Version}}\n")
	root.SetFlagErrorFunc(flagError)
	argsAsUsage(root)
	return root, g
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
