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
	"github.com/warden-run/warden/internal/wire"
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
	var agent, keyFile, credFile, name, trust, runAs string
	var envFlags []string
	var inheritEnv bool
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

CMD is the server Warden polices, and the wrap holds the agent's key and
the credential, so CMD gets little: an environment of PATH, HOME, USER,
LANG, LC_ALL, TZ and TMPDIR, and what --env adds (--env NAME passes this
process's NAME, --env NAME=VALUE sets it); --inherit-env passes the whole
environment instead. Variables named WARDEN_* never reach CMD. The key and
the credential are read before CMD starts, and no open file reaches it.
A wrap run as root refuses to start CMD as root: --user names who runs it
(--user root, to run it as root anyway). Without root, CMD runs as you and
can read the files you can, the key's included.

In a desktop client's configuration, the server's command becomes:
  warden --server https://warden.example mcp wrap --agent ai-agent://dev/me \
    --key ~/.warden/me.jwk --credential ~/.warden/desktop.cred -- npx some-mcp-server`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if agent == "" || keyFile == "" || credFile == "" {
				return errors.New("--agent, --key and --credential are required")
			}
			if trust != mcpgw.Trusted && trust != mcpgw.Untrusted {
				return fmt.Errorf("--trust %q: trusted or untrusted (say which; there is no default): an allowed call to an untrusted server taints the agent", trust)
			}
			env, err := wrapEnv(envFlags)
			if err != nil {
				return err
			}
			key, err := sdk.LoadKey(keyFile)
			if err != nil {
				return err
			}
			cred, err := readCredential(credFile)
			if err != nil {
				return err
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
			wc := mcpgw.WrapConfig{Name: name, Command: args, Trust: trust, Env: env, InheritEnv: inheritEnv, User: runAs}
			w, err := mcpgw.NewWrap(wc, mcpgw.WrapDeps{
				Decider: enforce.Remote{Client: wire.Client{Server: g.server, Credential: cred}},
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
			// Before the server starts (on first use): nothing this
			// process holds may reach it.
			if err := keepFromChildren(); err != nil {
				return fmt.Errorf("mcp wrap: %w", err)
			}
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
	fl.StringVar(&trust, "trust", "", "trusted or untrusted (required): an allowed call to an untrusted server taints the agent")
	fl.StringArrayVar(&envFlags, "env", nil, "a variable for CMD: NAME (this process's value, if set) or NAME=VALUE; repeatable")
	fl.BoolVar(&inheritEnv, "inherit-env", false, "give CMD this process's whole environment (but WARDEN_* variables)")
	fl.StringVar(&runAs, "user", "", "run CMD as this user (name or id; needs root, and required when running as root)")
	return cmd
}

// readCredential reads an enforcement point's credential file. The
// credential is a secret, as the key is: empty is a mistake, and a file
// others can read is refused.
func readCredential(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("--credential: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("--credential: %s is readable by others (mode %04o); run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--credential: %w", err)
	}
	cred := strings.TrimSpace(string(b))
	if cred == "" {
		return "", fmt.Errorf("--credential: %s is empty; it is the file 'warden pep register' wrote", path)
	}
	return cred, nil
}

// wrapEnv turns --env flags into CMD's variables: NAME=VALUE as given,
// NAME alone with this process's value (left out when it has none).
func wrapEnv(flags []string) (map[string]string, error) {
	env := map[string]string{}
	for _, f := range flags {
		name, value, set := strings.Cut(f, "=")
		if err := mcpgw.CheckEnvName(name); err != nil {
			return nil, fmt.Errorf("--env: %w", err)
		}
		if strings.ContainsRune(value, 0) {
			return nil, fmt.Errorf("--env %s: the value holds a NUL byte", name)
		}
		if !set {
			var ok bool
			if value, ok = os.LookupEnv(name); !ok {
				continue
			}
		}
		env[name] = value
	}
	return env, nil
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
