package cli

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

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
	Status        string `json:"status"`
	AudienceUnset bool   `json:"audience_unset,omitempty"`
}

func newPEPRegisterCmd(g *globals) *cobra.Command {
	var (
		out, description, audience string
		noAudience                 bool
		trust                      []string
	)
	cmd := &cobra.Command{
		Use:   "register NAME --audience URL --out FILE",
		Short: "Register an enforcement point and write its credential to FILE (mode 0600)",
		Long: `Register an enforcement point (an MCP gateway, a proxy, a service using the
SDK) and issue its credential, which it presents as a bearer token to
POST /v1/decide. The credential is written to FILE with mode 0600, never
printed, and never shown again: only its SHA-256 is stored.

--audience is the resource the enforcement point serves, as the tokens
agents present to it name it (aud): its URL, from identity.resources, or
the configured audience (identity.audience, "warden" by default) for one
whose agents get tokens that name no resource. Every decision it asks for
is a deny unless the agent's token was issued for it. --no-audience
registers one that accepts a token issued for any resource; its decisions
say so in the audit log.

--trust lists the request context fields Warden takes on its word:
source_ip (context.source.ip, and the region derived from it) and session
(context.session.id and taints); all or none. Fields it reports but is not
trusted for are left out of the policy input, and the audit entry says so.`,
		Example: `  warden pep register mcp-gateway-eu --audience https://gw.eu.example/mcp --trust source_ip,session --out mcp-gateway-eu.cred
  warden pep register desktop --audience warden --out desktop.cred`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("--out FILE is required: where to write the credential")
			}
			switch {
			case audience == "" && !noAudience:
				return errors.New("--audience URL is required: the resource this enforcement point serves (the aud of the tokens agents present to it); --no-audience accepts a token issued for any resource")
			case audience != "" && noAudience:
				return errors.New("--audience and --no-audience: one or the other")
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
			err = c.do(cmd.Context(), "POST", "/v1/enforcement-points", map[string]any{"name": args[0], "description": description,
				"audience": audience, "no_audience": noAudience, "trust": trust}, &res)
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
			if noAudience {
				fmt.Fprintf(g.errOut, "warning: %s has no audience: its decisions accept an agent token issued for any resource\n", res.Name)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&out, "out", "", "file to write the credential to; must not exist (required)")
	fl.StringVar(&description, "description", "", "what this enforcement point is")
	fl.StringVar(&audience, "audience", "", "the resource it serves: agent tokens must be issued for it (required unless --no-audience)")
	fl.BoolVar(&noAudience, "no-audience", false, "register it without an audience: its decisions accept a token issued for any resource")
	fl.StringSliceVar(&trust, "trust", nil, "context fields taken on its word: source_ip, session, all or none (default none)")
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
			for _, p := range res.EnforcementPoints {
				if p.AudienceUnset && p.Status == "active" {
					fmt.Fprintf(g.errOut, "warning: %s was registered before enforcement points had audiences: its decisions accept an agent token issued for any resource; register it again with --audience\n", p.Name)
				}
			}
			if g.format == "json" {
				return g.printJSON(res)
			}
			rows := [][]string{}
			for _, p := range res.EnforcementPoints {
				rows = append(rows, []string{p.Name, p.Status, pepAudience(p), orDash(strings.Join(p.Trust, ",")), fmtTime(p.CreatedAt), p.CreatedBy, fmtTime(p.RevokedAt), p.Description})
			}
			return g.table([]string{"NAME", "STATUS", "AUDIENCE", "TRUST", "CREATED", "BY", "REVOKED", "DESCRIPTION"}, rows)
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

// pepAudience is the AUDIENCE column: the audience, "(none)" for one
// registered without, "(unset)" for one registered before audiences.
func pepAudience(p pepView) string {
	switch {
	case p.Audience != "":
		return p.Audience
	case p.NoAudience:
		return "(none)"
	}
	return "(unset)"
}
