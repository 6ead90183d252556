package cli

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
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
			// The decision's entry.
			var decision *audit.Entry
			after := "-1"
			for decision == nil {
				var page struct {
					Entries []json.RawMessage `json:"entries"`
					Next    string            `json:"next"`
				}
				q := url.Values{"decision": {args[0]}, "kind": {"decision"}, "limit": {"1"}, "after": {after}}
				if err := c.do(ctx, "GET", "/v1/audit/entries?"+q.Encode(), nil, &page); err != nil {
					return err
				}
				if len(page.Entries) > 0 {
					if decision, err = audit.DecodeEntry(page.Entries[0]); err != nil {
						return err
					}
					break
				}
				if page.Next == "" {
					return fmt.Errorf("no decision %s in the audit log", args[0])
				}
				after = page.Next
			}
			var detail struct {
				Lineage *struct {
					Reads     []int64 `json:"reads"`
					Untrusted []int64 `json:"untrusted_reads"`
					Evicted   int     `json:"evicted"`
				} `json:"lineage"`
			}
			json.Unmarshal(decision.Detail, &detail)
			vkey, err := c.getBytes(ctx, "/v1/audit/checkpoint/key", true)
			if err != nil {
				return err
			}
			cv, err := audit.NewCheckpointVerifier(string(vkey))
			if err != nil {
				return err
			}
			signed, err := c.getBytes(ctx, "/v1/audit/checkpoint", true)
			if err != nil {
				return err
			}
			cp, err := cv.Parse(signed)
			if err != nil {
				return err
			}
			if decision.Index >= cp.Size {
				return fmt.Errorf("decision %s (entry %d) is not yet under a checkpoint (size %d); try again in a moment", args[0], decision.Index, cp.Size)
			}
			type link struct {
				Index    int64           `json:"index"`
				Role     string          `json:"role"` // decision, source, untrusted
				Entry    json.RawMessage `json:"entry"`
				Verified bool            `json:"verified"`
			}
			var links []link
			add := func(index int64, role string) error {
				p, err := c.inclusion(ctx, index, &cp)
				if err != nil {
					return err
				}
				links = append(links, link{Index: index, Role: role, Entry: p.Entry, Verified: true})
				return nil
			}
			if err := add(decision.Index, "decision"); err != nil {
				return err
			}
			if detail.Lineage == nil {
				if g.format == "json" {
					return g.printJSON(map[string]any{"decision": args[0], "checkpoint_size": cp.Size, "lineage": nil, "entries": links})
				}
				fmt.Fprintf(g.out, "decision %s (entry %d, proof verified) has no lineage: its enforcement point does not follow what agents read\n", args[0], decision.Index)
				return nil
			}
			for _, i := range detail.Lineage.Reads {
				if err := add(i, "source"); err != nil {
					return err
				}
			}
			for _, i := range detail.Lineage.Untrusted {
				if !slices.Contains(detail.Lineage.Reads, i) {
					if err := add(i, "untrusted"); err != nil {
						return err
					}
				}
			}
			if g.format == "json" {
				return g.printJSON(map[string]any{"decision": args[0], "checkpoint_size": cp.Size, "evicted": detail.Lineage.Evicted, "entries": links})
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
			if detail.Lineage.Evicted > 0 {
				fmt.Fprintf(g.out, "(%d earlier reads of the agent were forgotten before this decision)\n", detail.Lineage.Evicted)
			}
			return nil
		},
	}
}
