package cli

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-run/warden/internal/server"
	"github.com/warden-run/warden/internal/store"
)

func newTaintsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "taints ID",
		Short: "Show what untrusted content an agent has read, and since when",
		Long: `Show an agent's taints: each says that the agent read something it must not
trust (an untrusted upstream, route or catalog entry), in which task's scope,
the decision that allowed the first read (with its audit index) and the last
read. Policy sees them in context.session.taints of the agent's decisions.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.admin()
			if err != nil {
				return err
			}
			var out struct {
				Taints []store.Taint `json:"taints"`
			}
			if err := c.do(cmd.Context(), "GET", agentPath(args[0], "/taints"), nil, &out); err != nil {
				return err
			}
			if g.format == "json" {
				return g.printJSON(out)
			}
			if len(out.Taints) == 0 {
				fmt.Fprintln(g.out, "no taints")
				return nil
			}
			return g.table([]string{"TAINT", "TASK", "SINCE", "LAST READ", "FROM", "DECISION", "AUDIT INDEX"}, taintRows(out.Taints))
		},
	}
}

func taintRows(ts []store.Taint) [][]string {
	var rows [][]string
	for _, t := range ts {
		task := t.Task
		if task == "" {
			task = "(agent)"
		}
		rows = append(rows, []string{t.Name, task, t.CreatedAt.Format(time.RFC3339), t.LastReadAt.Format(time.RFC3339),
			t.Action + " " + t.ResourceID + " at " + t.EnforcementPoint, t.DecisionID, strconv.FormatInt(t.AuditIndex, 10)})
	}
	return rows
}

func newClearTaintsCmd(g *globals) *cobra.Command {
	var reason, task string
	cmd := &cobra.Command{
		Use:   "clear-taints ID --reason WHY",
		Short: "End an agent's taints (every scope, or one task's), on the record",
		Long: `End an agent's taints, for instance once a person has checked what it read.
The reason is required and goes to the audit log with who cleared what.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return errors.New("--reason is required: why the agent may be trusted again")
			}
			c, err := g.admin()
			if err != nil {
				return err
			}
			var out struct {
				Cleared []store.Taint `json:"cleared"`
			}
			if err := c.do(cmd.Context(), "POST", agentPath(args[0], "/taints/clear"), server.ClearTaintsRequest{Reason: reason, Task: task}, &out); err != nil {
				return err
			}
			if g.format == "json" {
				return g.printJSON(out)
			}
			fmt.Fprintf(g.out, "cleared %d taint(s)\n", len(out.Cleared))
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the record (required)")
	cmd.Flags().StringVar(&task, "task", "", "only this task's taints (default: every one)")
	return cmd
}
