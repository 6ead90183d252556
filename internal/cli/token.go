package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-run/warden/internal/server"
	"github.com/warden-run/warden/sdk"
)

func newTokenCmd(g *globals) *cobra.Command {
	var (
		agent, keyFile, scope, resource string
		lifetime                        time.Duration
		dpop                            bool
	)
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Fetch an access token with an agent's key (credential helper)",
		Long: `Fetch a fresh access token for --agent, authenticating with its private key.
In text format only the token is printed, for scripts:

  TOKEN=$(warden token --agent ai-agent://dev/demo --key agent.jwk)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if agent == "" || keyFile == "" {
				return fmt.Errorf("--agent and --key are required")
			}
			key, err := sdk.LoadKey(keyFile)
			if err != nil {
				return err
			}
			opts := []sdk.Option{sdk.WithScope(scope), sdk.WithLifetime(lifetime), sdk.WithResource(resource)}
			if dpop {
				opts = append(opts, sdk.WithDPoP())
			}
			c, err := sdk.NewClient(g.server, agent, key, opts...)
			if err != nil {
				return err
			}
			t, err := c.FetchToken(cmd.Context())
			if err != nil {
				return err
			}
			if g.format == "json" {
				return g.printJSON(map[string]any{"access_token": t.AccessToken, "token_type": t.TokenType,
					"scope": t.Scope, "expires_at": t.Expiry.UTC()})
			}
			fmt.Fprintln(g.out, t.AccessToken)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&agent, "agent", "", "agent id")
	fl.StringVar(&keyFile, "key", "", "the agent's private JWK file")
	fl.StringVar(&scope, "scope", "", "ask for only these roles (space-separated)")
	fl.DurationVar(&lifetime, "expires-in", 0, "ask for this lifetime (the server refuses more than its max_token_ttl, at most 15m)")
	fl.BoolVar(&dpop, "dpop", false, "bind the request with a DPoP proof (token_type DPoP)")
	fl.StringVar(&resource, "resource", "", "ask for a token for this resource server, such as an MCP gateway's URL (RFC 8707)")
	cmd.AddCommand(newTokenRevokeCmd(g), newTokenProofCmd(g))
	return cmd
}

func newTokenRevokeCmd(g *globals) *cobra.Command {
	var agent, reason string
	cmd := &cobra.Command{
		Use:   "revoke JTI",
		Short: "Revoke one access token by its jti (admin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.admin()
			if err != nil {
				return err
			}
			var out map[string]string
			if err := c.do(cmd.Context(), "POST", "/v1/tokens/revoke", server.RevokeTokenRequest{JTI: args[0], Agent: agent, Reason: reason}, &out); err != nil {
				return err
			}
			if g.format == "json" {
				return g.printJSON(out)
			}
			fmt.Fprintf(g.out, "revoked token %s\n", args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&agent, "agent", "", "the agent the token belongs to, for the record")
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the record")
	return cmd
}

func newTokenProofCmd(g *globals) *cobra.Command {
	var keyFile, method, url, token string
	cmd := &cobra.Command{
		Use:   "proof",
		Short: "Make a DPoP proof with an agent's key, for one request",
		Long: `Print a DPoP proof (RFC 9449) signed with the agent's key for one request:
--method and --url of that request, and --token, the access token it
carries. An agent's SDK makes these itself; this is for trying an
enforcement point or the decision API by hand. A proof is good once, for
a minute.`,
		Example: `  PROOF=$(warden token proof --key agent.jwk --method POST --url https://tools.example/mcp --token "$TOKEN")`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyFile == "" || method == "" || url == "" || token == "" {
				return errors.New("--key, --method, --url and --token are required")
			}
			k, err := sdk.LoadKey(keyFile)
			if err != nil {
				return err
			}
			proof, err := k.DPoPProof(method, url, token)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(g.out, proof)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&keyFile, "key", "", "the agent's private JWK file")
	fl.StringVar(&method, "method", "", "the HTTP method of the request")
	fl.StringVar(&url, "url", "", "the URL of the request")
	fl.StringVar(&token, "token", "", "the access token the request carries")
	return cmd
}
