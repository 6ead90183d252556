package cli

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/server"
)

func newKeysCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Manage the issuer's token signing keys"}
	var list = &cobra.Command{
		Use:   "list",
		Short: "List the published signing keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.admin()
			if err != nil {
				return err
			}
			var out struct {
				Keys []identity.PublishedKey `json:"keys"`
			}
			if err := c.do(cmd.Context(), "GET", "/v1/keys", nil, &out); err != nil {
				return err
			}
			return g.printKeys(out.Keys)
		},
	}
	var retireNow bool
	var rotate = &cobra.Command{
		Use:   "rotate",
		Short: "Start signing with a new key now; the old one stays published until its tokens expire",
		Long: `Start signing with a new key now. The old key stays in the JWKS until every
token it signed has expired. With --retire-now every older key leaves at once
and every token signed before is refused (for keys that may be compromised:
agents then fetch new tokens).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.admin()
			if err != nil {
				return err
			}
			var out struct {
				Active string                  `json:"active"`
				Keys   []identity.PublishedKey `json:"keys"`
			}
			if err := c.do(cmd.Context(), "POST", "/v1/keys/rotate", server.RotateKeysRequest{RetireNow: retireNow}, &out); err != nil {
				return err
			}
			if g.format == "text" {
				fmt.Fprintf(g.out, "now signing with %s\n", out.Active)
			}
			return g.printKeys(out.Keys)
		},
	}
	rotate.Flags().BoolVar(&retireNow, "retire-now", false, "unpublish every older key now, refusing every token signed before")
	cmd.AddCommand(list, rotate)
	return cmd
}

func (g *globals) printKeys(keys []identity.PublishedKey) error {
	if g.format == "json" {
		return g.printJSON(map[string]any{"keys": keys})
	}
	rows := [][]string{}
	for _, k := range keys {
		rows = append(rows, []string{k.KID, k.Alg, strconv.FormatBool(k.Active), fmtTime(k.CreatedAt), fmtTime(k.RetireAt)})
	}
	return g.table([]string{"KID", "ALG", "ACTIVE", "CREATED", "UNPUBLISHED AT"}, rows)
}
