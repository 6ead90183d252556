package cli

import (
	"net/url"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/warden-run/warden/internal/store"
)

func newEventsCmd(g *globals) *cobra.Command {
	var (
		target string
		after  int64
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show the record of admin actions: who did what to which target, when",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.admin()
			if err != nil {
				return err
			}
			q := url.Values{"limit": {strconv.Itoa(limit)}, "after": {strconv.FormatInt(after, 10)}}
			if target != "" {
				q.Set("target", target)
			}
			var out struct {
				Events []store.Event `json:"events"`
			}
			if err := c.do(cmd.Context(), "GET", "/v1/events?"+q.Encode(), nil, &out); err != nil {
				return err
			}
			if g.format == "json" {
				return g.printJSON(out)
			}
			rows := [][]string{}
			for _, e := range out.Events {
				rows = append(rows, []string{strconv.FormatInt(e.Seq, 10), fmtTime(e.Time), e.Actor, e.Action, e.Target, string(e.Detail)})
			}
			return g.table([]string{"SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "DETAIL"}, rows)
		},
	}
	cmd.Flags().StringVar(&target, "target", "", "only events about this target (an agent id, a jti, issuer)")
	cmd.Flags().Int64Var(&after, "after", 0, "only events after this sequence number")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many (1 to 1000)")
	return cmd
}
