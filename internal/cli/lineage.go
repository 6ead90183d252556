package cli

import (
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-run/warden/internal/audit"
)

func newAuditLineageCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "lineage DECISION_ID",
		Short: "What a decision's action depended on: the reads its arguments came from, each proven in the log",
		Long: `Find a decision's entry, and the entries it links to (detail.lineage): the
reads its arguments' values came from, and the untrusted reads the agent had
made before it. Every entry, the decision's too, is proven included in the
latest signed checkpoint (RFC 6962), checked here with the server's key.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := g.admin()
			if err != nil {
				return err
			}
			vkey, err := c.getBytes(ctx, "/v1/audit/checkpoint/key", true)
			if err != nil {
				return err
			}
			cv, err := audit.NewCheckpointVerifier(string(vkey))
			if err != nil {
				return err
			}
			var ans struct {
				Checkpoint string `json:"checkpoint"`
				Lineage    *struct {
					Evicted int `json:"evicted"`
				} `json:"lineage"`
				Entries []struct {
					Role string `json:"role"`
					inclusionProof
				} `json:"entries"`
			}
			if err := c.do(ctx, "GET", "/v1/audit/lineage?"+url.Values{"decision": {args[0]}}.Encode(), nil, &ans); err != nil {
				return err
			}
			// Checked here: the checkpoint's signature, and every proof.
			cp, err := cv.Parse([]byte(ans.Checkpoint))
			if err != nil {
				return fmt.Errorf("the checkpoint: %w", err)
			}
			type link struct {
				Index    int64           `json:"index"`
				Role     string          `json:"role"`
				Entry    json.RawMessage `json:"entry"`
				Verified bool            `json:"verified"`
			}
			var links []link
			for _, e := range ans.Entries {
				if err := e.verify(&cp); err != nil {
					return err
				}
				links = append(links, link{Index: e.Index, Role: e.Role, Entry: e.Entry, Verified: true})
			}
			if g.format == "json" {
				return g.printJSON(map[string]any{"decision": args[0], "checkpoint_size": cp.Size, "lineage": ans.Lineage != nil, "entries": links})
			}
			if ans.Lineage == nil {
				fmt.Fprintf(g.out, "decision %s (entry %d, proof verified) has no lineage: its enforcement point does not follow what agents read\n", args[0], links[0].Index)
				return nil
			}
			fmt.Fprintf(g.out, "decision %s, against the checkpoint of size %d; every entry's inclusion proof verified\n\n", args[0], cp.Size)
			var rows [][]string
			for _, l := range links {
				e, err := audit.DecodeEntry(l.Entry)
				if err != nil {
					return err
				}
				var res struct {
					Kind string `json:"kind"`
					ID   string `json:"id"`
				}
				json.Unmarshal(e.Resource, &res)
				rows = append(rows, []string{fmt.Sprint(l.Index), l.Role, e.Time.Format(time.RFC3339), e.Agent, e.Action, res.ID, e.Outcome})
			}
			if err := g.table([]string{"INDEX", "ROLE", "TIME", "AGENT", "ACTION", "RESOURCE", "OUTCOME"}, rows); err != nil {
				return err
			}
			if ans.Lineage.Evicted > 0 {
				fmt.Fprintf(g.out, "(%d earlier reads of the agent were forgotten before this decision)\n", ans.Lineage.Evicted)
			}
			return nil
		},
	}
}
