package cli

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-run/warden/internal/server"
	"github.com/warden-run/warden/internal/store"
)

func newApprovalCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "approval",
		Short: "Approval requests: actions policy holds until enough approvers agree",
		Long: `When policy asks for approvals (obligation require_approvals), the decision
is pending and Warden opens a request for exactly that action: the agent,
action, resource, arguments (RFC 8785 canonical JSON), audience and policy
version, by their digest. Approvers approve or reject it ('warden approve',
'warden reject', or an agent's signed vote); once enough have approved, the
agent's next identical call runs, once.`,
	}
	cmd.AddCommand(newApprovalListCmd(g), newApprovalShowCmd(g))
	return cmd
}

func newApprovalListCmd(g *globals) *cobra.Command {
	var agent, status string
	var all bool
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List approval requests (pending and approved ones unless --all or --status)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if status != "" && !store.ApprovalStatus(status).Valid() {
				return fmt.Errorf("--status %q: want pending, approved, rejected, expired or consumed", status)
			}
			c, err := g.admin()
			if err != nil {
				return err
			}
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			if agent != "" {
				q.Set("agent", agent)
			}
			if status != "" {
				q.Set("status", status)
			} else if !all {
				q.Set("live", "true")
			}
			var out struct {
				Approvals []store.Approval `json:"approvals"`
				Next      string           `json:"next"`
			}
			if err := c.do(cmd.Context(), "GET", "/v1/approvals?"+q.Encode(), nil, &out); err != nil {
				return err
			}
			if g.format == "json" {
				return g.printJSON(out)
			}
			if len(out.Approvals) == 0 {
				fmt.Fprintln(g.out, "no approval requests")
				return nil
			}
			var rows [][]string
			for _, a := range out.Approvals {
				rows = append(rows, []string{a.ID, string(a.Status), a.Agent, a.Action + " " + a.Resource.ID,
					fmt.Sprintf("%d/%d", approvedBy(a), a.Rule.Count), a.ExpiresAt.Format(time.RFC3339)})
			}
			return g.table([]string{"ID", "STATUS", "AGENT", "ACTION", "APPROVALS", "EXPIRES"}, rows)
		},
	}
	cmd.Flags().StringVar(&agent, "agent", "", "only requests of this agent")
	cmd.Flags().StringVar(&status, "status", "", "only requests in this status (pending, approved, rejected, expired, consumed)")
	cmd.Flags().BoolVar(&all, "all", false, "finished requests too")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many (1 to 1000)")
	return cmd
}

func approvedBy(a store.Approval) int {
	n := 0
	for _, v := range a.Votes {
		if v.Approve {
			n++
		}
	}
	return n
}

func newApprovalShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show exactly what a request would run, what it needs, and the votes",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.admin()
			if err != nil {
				return err
			}
			var a store.Approval
			if err := c.do(cmd.Context(), "GET", "/v1/approvals/"+url.PathEscape(args[0]), nil, &a); err != nil {
				return err
			}
			if g.format == "json" {
				return g.printJSON(a)
			}
			fmt.Fprintf(g.out, "approval %s: %s\nagent     %s\naction    %s %s %s\narguments %s\naudience  %s\npolicy    %s\ndigest    %s\n",
				a.ID, a.Status, a.Agent, a.Action, a.Resource.Kind, a.Resource.ID, a.Args, a.Audience, a.PolicyVersion, a.Digest)
			fmt.Fprintf(g.out, "needs     %s\nrequested %s (decision %s), expires %s\n", describeRule(a.Rule),
				a.CreatedAt.Format(time.RFC3339), a.DecisionID, a.ExpiresAt.Format(time.RFC3339))
			if a.ConsumedBy != "" {
				fmt.Fprintf(g.out, "ran       %s (decision %s)\n", a.ConsumedAt.Format(time.RFC3339), a.ConsumedBy)
			}
			if len(a.Votes) == 0 {
				fmt.Fprintln(g.out, "\nno votes yet")
				return nil
			}
			fmt.Fprintln(g.out)
			var rows [][]string
			for _, v := range a.Votes {
				verdict := "approve"
				if !v.Approve {
					verdict = "reject"
				}
				signed := ""
				if v.Proof != "" {
					signed = "signed"
				}
				rows = append(rows, []string{v.At.Format(time.RFC3339), verdict, v.By, v.Kind, strings.Join(v.Roles, ","), signed, v.Reason})
			}
			return g.table([]string{"TIME", "VOTE", "BY", "KIND", "ROLES", "PROOF", "REASON"}, rows)
		},
	}
}

func describeRule(r store.ApprovalRule) string {
	s := fmt.Sprintf("%d approver(s)", r.Count)
	if len(r.Roles) > 0 {
		s += " with a role in " + strings.Join(r.Roles, ", ")
	}
	if len(r.Approvers) > 0 {
		s += " among " + strings.Join(r.Approvers, ", ")
	}
	if r.Humans > 0 {
		s += fmt.Sprintf(", at least %d human", r.Humans)
	}
	if r.Agents > 0 {
		s += fmt.Sprintf(", at least %d agent", r.Agents)
	}
	if r.ExcludeOwner {
		s += ", none sharing the agent's owner"
	}
	return s + fmt.Sprintf("; %d rejection(s) reject", r.Rejections)
}

// newVoteCmd is warden approve and warden reject.
func newVoteCmd(g *globals, verb string) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   verb + " ID --reason WHY",
		Short: map[string]string{"approve": "Approve an approval request", "reject": "Reject an approval request"}[verb],
		Long: `Votes on an approval request as the signed-in person (the admin credential).
Check what it runs first: 'warden approval show ID'.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(reason) == "" {
				return errors.New("--reason is required: it goes to the request and the audit log")
			}
			c, err := g.admin()
			if err != nil {
				return err
			}
			var a store.Approval
			if err := c.do(cmd.Context(), "POST", "/v1/approvals/"+url.PathEscape(args[0])+"/"+verb, server.VoteRequest{Reason: reason}, &a); err != nil {
				return err
			}
			if g.format == "json" {
				return g.printJSON(a)
			}
			fmt.Fprintf(g.out, "approval %s is %s (%d of %d approvals)\n", a.ID, a.Status, approvedBy(a), a.Rule.Count)
			if a.Status == store.ApprovalApproved {
				fmt.Fprintf(g.out, "the agent's next identical call runs, once, until %s\n", a.ExpiresAt.Format(time.RFC3339))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the record (required)")
	return cmd
}
