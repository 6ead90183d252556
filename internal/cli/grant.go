package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-run/warden/internal/grants"
	"github.com/warden-run/warden/internal/server"
	"github.com/warden-run/warden/internal/store"
)

func newGrantCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "grant",
		Short: "Just-in-time task grants: what an agent may do for one task, for a while",
		Long: `A grant gives one agent, for one task (or none), the actions on the
resources (ids, or prefixes ending in *) that task needs, with argument
values fixed by constraints, for a lifetime. The live policy decides each
request (data.warden.grants): given at once, sent for approvals, or refused.
Decisions see the grants in force as context.grants. A grant ends when its
lifetime runs out, when it is revoked, or when its task completes.`,
	}
	cmd.AddCommand(newGrantListCmd(g), newGrantShowCmd(g), newGrantAskCmd(g), newGrantRevokeCmd(g), newGrantCompleteCmd(g))
	return cmd
}

func newGrantListCmd(g *globals) *cobra.Command {
	var agent, task, status string
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List grants (pending and active ones unless --all or --status)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if status != "" && !store.GrantStatus(status).Valid() {
				return fmt.Errorf("--status %q: want pending, active, revoked, expired, completed or rejected", status)
			}
			c, err := g.admin()
			if err != nil {
				return err
			}
			q := url.Values{"limit": {"1000"}}
			for k, v := range map[string]string{"agent": agent, "task": task, "status": status} {
				if v != "" {
					q.Set(k, v)
				}
			}
			if status == "" && !all {
				q.Set("live", "true")
			}
			var out struct {
				Grants []store.Grant `json:"grants"`
			}
			if err := c.do(cmd.Context(), "GET", "/v1/grants?"+q.Encode(), nil, &out); err != nil {
				return err
			}
			if g.format == "json" {
				return g.printJSON(out)
			}
			if len(out.Grants) == 0 {
				fmt.Fprintln(g.out, "no grants")
				return nil
			}
			var rows [][]string
			for _, x := range out.Grants {
				until := "-"
				if !x.ExpiresAt.IsZero() {
					until = x.ExpiresAt.Format(time.RFC3339)
				}
				rows = append(rows, []string{x.ID, string(x.Status), x.Agent, orDash(x.Task), strings.Join(x.Actions, ","), strings.Join(x.Resources, ","), until})
			}
			return g.table([]string{"ID", "STATUS", "AGENT", "TASK", "ACTIONS", "RESOURCES", "EXPIRES"}, rows)
		},
	}
	cmd.Flags().StringVar(&agent, "agent", "", "only this agent's grants")
	cmd.Flags().StringVar(&task, "task", "", "only this task's grants")
	cmd.Flags().StringVar(&status, "status", "", "only grants in this status")
	cmd.Flags().BoolVar(&all, "all", false, "ended grants too")
	return cmd
}

func newGrantShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a grant",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.admin()
			if err != nil {
				return err
			}
			var x store.Grant
			if err := c.do(cmd.Context(), "GET", "/v1/grants/"+url.PathEscape(args[0]), nil, &x); err != nil {
				return err
			}
			return g.printJSON(x)
		},
	}
}

func newGrantAskCmd(g *globals) *cobra.Command {
	var r grants.Request
	var constraints []string
	cmd := &cobra.Command{
		Use:   "ask AGENT --action A --resource R [--task T] [--constraint arg=JSON] --lifetime 30m --reason WHY",
		Short: "Ask for a grant for an agent, as yourself",
		Example: `  warden grant ask ai-agent://prod/finance/trader --task Q4-rebalance \
    --action tools/call --resource broker/place_order --constraint 'max_notional=5000000' \
    --lifetime 30m --reason "rebalance approved by the desk"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r.Agent = args[0]
			if strings.TrimSpace(r.Reason) == "" {
				return errors.New("--reason is required: it goes to the grant and the audit log")
			}
			for _, kv := range constraints {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return fmt.Errorf("--constraint %q: want arg=value (the value as JSON, or a plain string)", kv)
				}
				if r.Constraints == nil {
					r.Constraints = map[string]any{}
				}
				var val any
				if json.Unmarshal([]byte(v), &val) != nil {
					val = v
				}
				r.Constraints[k] = val
			}
			c, err := g.admin()
			if err != nil {
				return err
			}
			var x store.Grant
			if err := c.do(cmd.Context(), "POST", "/v1/grants", server.GrantBody{Request: r}, &x); err != nil {
				return err
			}
			if g.format == "json" {
				return g.printJSON(x)
			}
			switch x.Status {
			case store.GrantPending:
				fmt.Fprintf(g.out, "grant %s is pending approval request %s ('warden approval show %s')\n", x.ID, x.ApprovalID, x.ApprovalID)
			default:
				fmt.Fprintf(g.out, "grant %s is %s until %s\n", x.ID, x.Status, x.ExpiresAt.Format(time.RFC3339))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&r.Task, "task", "", "the task the grant is for (tokens bound to it see the grant)")
	f.StringSliceVar(&r.Actions, "action", nil, "an action the grant covers (repeatable)")
	f.StringSliceVar(&r.Resources, "resource", nil, "a resource id, or a prefix ending in * (repeatable)")
	f.StringArrayVar(&constraints, "constraint", nil, "arg=value: the value an argument must have (repeatable)")
	f.StringVar(&r.Lifetime, "lifetime", "30m", "how long the grant lasts")
	f.StringVar(&r.Reason, "reason", "", "why, for the record (required)")
	return cmd
}

func newGrantRevokeCmd(g *globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "revoke ID --reason WHY",
		Short: "End a grant now, everywhere",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(reason) == "" {
				return errors.New("--reason is required")
			}
			c, err := g.admin()
			if err != nil {
				return err
			}
			var x store.Grant
			if err := c.do(cmd.Context(), "POST", "/v1/grants/"+url.PathEscape(args[0])+"/revoke", server.ReasonBody{Reason: reason}, &x); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "grant %s is %s\n", x.ID, x.Status)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the record (required)")
	return cmd
}

func newGrantCompleteCmd(g *globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "complete TASK",
		Short: "The task is done: every grant for it ends now",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.admin()
			if err != nil {
				return err
			}
			var out struct {
				Ended int `json:"ended"`
			}
			if err := c.do(cmd.Context(), "POST", "/v1/tasks/"+url.PathEscape(args[0])+"/complete", server.ReasonBody{Reason: reason}, &out); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "task %s complete: %s ended\n", args[0], plural(out.Ended, "grant"))
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the record")
	return cmd
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}
