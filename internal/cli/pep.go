package cli

import (
	"errors"
	"fmt"
	"net/url"
	"os"

	"github.com/spf13/cobra"

	"github.com/warden-run/warden/internal/store"
)

func newPEPCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pep",
		Short: "Register and revoke enforcement points, the callers of the decision API",
	}
	cmd.AddCommand(newPEPRegisterCmd(g), newPEPListCmd(g), newPEPRevokeCmd(g))
	return cmd
}

// pepView is an enforcement point as the API lists it.
type pepView struct {
	store.EnforcementPoint
	Status string `json:"status"`
}

func newPEPRegisterCmd(g *globals) *cobra.Command {
	var out, description string
	cmd := &cobra.Command{
		Use:   "register NAME --out FILE",
		Short: "Register an enforcement point and write its credential to FILE (mode 0600)",
		Long: `Register an enforcement point (an MCP gateway, a proxy, a service using the
SDK) and issue its credential, which it presents as a bearer token to
POST /v1/decide. The credential is written to FILE with mode 0600, never
printed, and never shown again: only its SHA-256 is stored.`,
		Example: `  warden pep register mcp-gateway-eu --out mcp-gateway-eu.cred`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("--out FILE is required: where to write the credential")
			}
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("--out: %w", err)
			}
			c, err := g.admin()
			if err != nil {
				f.Close()
				os.Remove(out)
				return err
			}
			var res struct {
				Credential string `json:"credential"`
				pepView
			}
			err = c.do(cmd.Context(), "POST", "/v1/enforcement-points", map[string]string{"name": args[0], "description": description}, &res)
			if err == nil {
				_, err = fmt.Fprintln(f, res.Credential)
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(out)
				return err
			}
			if g.format == "json" {
				return g.printJSON(map[string]any{"enforcement_point": res.pepView, "credential_file": out})
			}
			fmt.Fprintf(g.out, "registered %s; its credential is in %s (mode 0600)\n", res.Name, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write the credential to; must not exist (required)")
	cmd.Flags().StringVar(&description, "description", "", "what this enforcement point is")
	return cmd
}

func newPEPListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List enforcement points, revoked ones included",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.admin()
			if err != nil {
				return err
			}
			var res struct {
				EnforcementPoints []pepView `json:"enforcement_points"`
			}
			if err := c.do(cmd.Context(), "GET", "/v1/enforcement-points", nil, &res); err != nil {
				return err
			}
			if g.format == "json" {
				return g.printJSON(res)
			}
			rows := [][]string{}
			for _, p := range res.EnforcementPoints {
				rows = append(rows, []string{p.Name, p.Status, fmtTime(p.CreatedAt), p.CreatedBy, fmtTime(p.RevokedAt), p.Description})
			}
			return g.table([]string{"NAME", "STATUS", "CREATED", "BY", "REVOKED", "DESCRIPTION"}, rows)
		},
	}
}

func newPEPRevokeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke an enforcement point's credential, at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.admin()
			if err != nil {
				return err
			}
			var p pepView
			if err := c.do(cmd.Context(), "POST", "/v1/enforcement-points/"+url.PathEscape(args[0])+"/revoke", nil, &p); err != nil {
				return err
			}
			if g.format == "json" {
				return g.printJSON(p)
			}
			fmt.Fprintf(g.out, "revoked %s\n", p.Name)
			return nil
		},
	}
}
