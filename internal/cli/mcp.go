package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/warden-run/warden/internal/enforce"
	"github.com/warden-run/warden/internal/enforce/mcpgw"
	"github.com/warden-run/warden/sdk"
)

func newMCPCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mcp",
		Short: "Enforcement for local MCP servers",
	}
	cmd.AddCommand(newMCPWrapCmd(g))
	return cmd
}

func newMCPWrapCmd(g *globals) *cobra.Command {
	var agent, keyFile, credFile, name, trust string
	cmd := &cobra.Command{
		Use:   "wrap --agent ID --key agent.jwk --credential pep.cred -- CMD [ARGS...]",
		Short: "Run a local MCP server behind Warden, as a stdio MCP server for desktop clients",
		Long: `Speak MCP on standard input and output, to a desktop MCP client, and start the
real MCP server CMD as a child, over stdio. Every tools/call, resources/read
and prompts/get is decided by the Warden server (--server) before it reaches
CMD, with the agent's own access token and a DPoP proof made with its key;
tools/list shows only the tools policy could allow. The wrap asks as a
registered enforcement point: --credential is the file 'warden pep register'
wrote. Nothing but MCP is written to standard output; logs go to standard
error. A CMD that exits is started again.

In a desktop client's configuration, the server's command becomes:
  warden --server https://warden.example mcp wrap --agent ai-agent://dev/me \
    --key ~/.warden/me.jwk --credential ~/.warden/desktop.cred -- npx some-mcp-server`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if agent == "" || keyFile == "" || credFile == "" {
				return errors.New("--agent, --key and --credential are required")
			}
			if trust != mcpgw.Trusted && trust != mcpgw.Untrusted {
				return fmt.Errorf("--trust %q: trusted or untrusted", trust)
			}
			key, err := sdk.LoadKey(keyFile)
			if err != nil {
				return err
			}
			// The credential is a secret, as the key is: empty is a mistake,
			// and a file others can read is refused.
			st, err := os.Stat(credFile)
			if err != nil {
				return fmt.Errorf("--credential: %w", err)
			}
			if st.Mode().Perm()&0o077 != 0 {
				return fmt.Errorf("--credential: %s is readable by others (mode %04o); run chmod 600 %s", credFile, st.Mode().Perm(), credFile)
			}
			b, err := os.ReadFile(credFile)
			if err != nil {
				return fmt.Errorf("--credential: %w", err)
			}
			cred := strings.TrimSpace(string(b))
			if cred == "" {
				return fmt.Errorf("--credential: %s is empty; it is the file 'warden pep register' wrote", credFile)
			}
			if name == "" {
				name = serverName(args[0])
			}
			client, err := sdk.NewClient(g.server, agent, key, sdk.WithDPoP())
			if err != nil {
				return err
			}
			decideURL := strings.TrimSuffix(g.server, "/") + "/v1/decide"
			log := slog.New(slog.NewTextHandler(g.errOut, &slog.HandlerOptions{Level: slog.LevelWarn}))
			w, err := mcpgw.NewWrap(name, args, trust, mcpgw.WrapDeps{
				Decider: enforce.Remote{Server: g.server, Credential: cred},
				Caller: func(ctx context.Context) (*enforce.Caller, error) {
					tok, err := client.Token(ctx)
					if err != nil {
						return nil, err
					}
					return &enforce.Caller{Token: tok.AccessToken, Agent: agent}, nil
				},
				Proof: func(token string) (string, string, string, error) {
					p, err := key.DPoPProof("POST", decideURL, token)
					return p, "POST", decideURL, err
				},
				Logger: log,
			})
			if err != nil {
				return err
			}
			defer w.Close()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return w.ServeStdio(ctx, os.Stdin, os.Stdout)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&agent, "agent", "", "the agent's id (required)")
	fl.StringVar(&keyFile, "key", "", "the agent's private key file, JWK (required)")
	fl.StringVar(&credFile, "credential", "", "the enforcement point credential file from 'warden pep register' (required)")
	fl.StringVar(&name, "name", "", "where the server's tools are in policy: <name>/<tool> (default: the command's name)")
	fl.StringVar(&trust, "trust", "trusted", "trusted or untrusted: an untrusted server's results taint the session")
	return cmd
}

// serverName makes a policy name from a command's file name.
func serverName(cmd string) string {
	base := strings.ToLower(filepath.Base(cmd))
	base = strings.TrimSuffix(base, filepath.Ext(base))
	var b strings.Builder
	for _, r := range base {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteRune('-')
		}
	}
	s := strings.Trim(b.String(), "-")
	if s == "" {
		return "local"
	}
	return s
}
