package cli

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-run/warden/internal/monitor"
	"github.com/warden-run/warden/internal/server"
	"github.com/warden-run/warden/internal/store"
)

func newIncidentCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "incident",
		Short: "Incidents: what the automatic response did about an agent, and why",
		Long: `An incident is one episode of an agent's risk: the signals that fired (with
the audit indexes of the decisions behind them), the risk score and level,
and the responses taken (alert, restrict, quarantine, revoke_tokens,
disable), each with its reason and expiry. An agent has at most one incident
open; acknowledge it when someone is looking, resolve it when done. Resolving
does not release the agent: 'warden agent enable ID' does.`,
	}
	cmd.AddCommand(newIncidentListCmd(g), newIncidentShowCmd(g), newIncidentStatusCmd(g, "ack", "acknowledge an incident: someone is looking"),
		newIncidentStatusCmd(g, "resolve", "resolve an incident: the episode is over"))
	return cmd
}

func newIncidentListCmd(g *globals) *cobra.Command {
	var agent, status string
	var all bool
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List incidents (open ones unless --all or --status)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if status != "" && !store.IncidentStatus(status).Valid() {
				return fmt.Errorf("--status %q: want open, acknowledged or resolved", status)
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
				q.Set("open", "true")
			}
			var out struct {
				Incidents []store.Incident `json:"incidents"`
				Next      string           `json:"next"`
			}
			if err := c.do(cmd.Context(), "GET", "/v1/incidents?"+q.Encode(), nil, &out); err != nil {
				return err
			}
			if g.format == "json" {
				return g.printJSON(out)
			}
			if len(out.Incidents) == 0 {
				fmt.Fprintln(g.out, "no incidents")
				return nil
			}
			var rows [][]string
			for _, inc := range out.Incidents {
				rows = append(rows, []string{inc.ID, inc.AgentID, string(inc.Status), inc.Level, strings.Join(inForce(inc), ","),
					inc.OpenedAt.Format(time.RFC3339)})
			}
			return g.table([]string{"ID", "AGENT", "STATUS", "LEVEL", "IN FORCE", "OPENED"}, rows)
		},
	}
	cmd.Flags().StringVar(&agent, "agent", "", "only this agent's incidents")
	cmd.Flags().StringVar(&status, "status", "", "only incidents in this status (open, acknowledged, resolved)")
	cmd.Flags().BoolVar(&all, "all", false, "resolved incidents too")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many (1 to 1000)")
	return cmd
}

// inForce names the responses of inc that have not ended.
func inForce(inc store.Incident) []string {
	var out []string
	for _, a := range inc.Actions {
		if a.Ended.IsZero() && a.Action != "alert" && !slices.Contains(out, a.Action) {
			out = append(out, a.Action)
		}
	}
	if out == nil {
		return []string{"-"}
	}
	return out
}

func newIncidentShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show an incident and its timeline",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.admin()
			if err != nil {
				return err
			}
			var inc store.Incident
			if err := c.do(cmd.Context(), "GET", "/v1/incidents/"+url.PathEscape(args[0]), nil, &inc); err != nil {
				return err
			}
			if g.format == "json" {
				return g.printJSON(inc)
			}
			fmt.Fprintf(g.out, "incident %s: %s, agent %s, level %s\nopened %s, updated %s\nin force: %s\n\n",
				inc.ID, inc.Status, inc.AgentID, inc.Level, inc.OpenedAt.Format(time.RFC3339), inc.UpdatedAt.Format(time.RFC3339),
				strings.Join(inForce(inc), ", "))
			var rows [][]string
			for _, e := range inc.Timeline {
				what := strings.Join(e.Signals, ",")
				if e.Action != "" {
					what = e.Action
				}
				detail := e.Note
				if e.Kind == "signal" {
					detail = fmt.Sprintf("risk %d (%s)", e.Score, e.Level)
				}
				index := ""
				if e.AuditIndex > 0 {
					index = strconv.FormatInt(e.AuditIndex, 10)
				}
				rows = append(rows, []string{e.Time.Format(time.RFC3339), e.Kind, what, index, e.Actor, detail})
			}
			if err := g.table([]string{"TIME", "KIND", "WHAT", "AUDIT INDEX", "BY", "DETAIL"}, rows); err != nil {
				return err
			}
			if inc.Dropped > 0 {
				fmt.Fprintf(g.out, "(%d later events not kept here; the audit log has them)\n", inc.Dropped)
			}
			return nil
		},
	}
}

func newIncidentStatusCmd(g *globals, verb, short string) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   verb + " ID --reason WHY",
		Short: strings.ToUpper(short[:1]) + short[1:],
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(reason) == "" {
				return errors.New("--reason is required: it goes to the incident and the audit log")
			}
			c, err := g.admin()
			if err != nil {
				return err
			}
			var inc store.Incident
			if err := c.do(cmd.Context(), "POST", "/v1/incidents/"+url.PathEscape(args[0])+"/"+verb, server.IncidentRequest{Reason: reason}, &inc); err != nil {
				return err
			}
			if g.format == "json" {
				return g.printJSON(inc)
			}
			fmt.Fprintf(g.out, "incident %s is %s\n", inc.ID, inc.Status)
			if inc.Status == store.IncidentResolved && !slices.Equal(inForce(inc), []string{"-"}) {
				fmt.Fprintf(g.out, "still in force: %s (release the agent with 'warden agent enable %s --reason ...')\n",
					strings.Join(inForce(inc), ", "), inc.AgentID)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the record (required)")
	return cmd
}

func newRiskCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "risk ID",
		Short: "Show an agent's risk score, level and the signals behind it",
		Long: `Show an agent's live risk as policy sees it (context.risk), and each signal
that fired for it: how often, when last, and the audit indexes of the
decisions that fired it ('warden audit proof INDEX' proves each).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.admin()
			if err != nil {
				return err
			}
			var rep monitor.AgentReport
			if err := c.do(cmd.Context(), "GET", agentPath(args[0], "/risk"), nil, &rep); err != nil {
				return err
			}
			if g.format == "json" {
				return g.printJSON(rep)
			}
			r := rep.Risk
			state := ""
			if r.Learning {
				state += " (learning its baseline: only hard signals count)"
			}
			if r.Stale {
				state += " (stale: the monitor is behind the audit log)"
			}
			fmt.Fprintf(g.out, "%s: risk %d, %s%s\n", rep.Agent, r.Score, r.Level, state)
			if len(rep.Firings) == 0 {
				fmt.Fprintln(g.out, "no signal has fired")
				return nil
			}
			var names []string
			for n := range rep.Firings {
				names = append(names, n)
			}
			slices.Sort(names)
			var rows [][]string
			for _, n := range names {
				f := rep.Firings[n]
				ev := make([]string, len(f.Evidence))
				for i, x := range f.Evidence {
					ev[i] = strconv.FormatInt(x, 10)
				}
				rows = append(rows, []string{n, strconv.FormatInt(f.Count, 10), f.Last.Format(time.RFC3339), strings.Join(ev, ",")})
			}
			return g.table([]string{"SIGNAL", "FIRED", "LAST", "AUDIT INDEXES"}, rows)
		},
	}
}

func newMonitorCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "monitor",
		Short: "The behavioural monitor: how far it has read, and rebuilding it",
		Long: `The monitor follows the audit log into each agent's baseline and risk score
(docs/monitoring.md). 'status' says how far it has read; 'rebuild' has it
forget its model and read the whole log again (decisions see stale risk until
it has caught up); 'replay' is a dry run of other thresholds and another
playbook on recorded traffic.`,
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show how far the monitor has read the audit log",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return monitorCall(cmd, g, "GET", "/v1/monitor", nil)
		},
	}
	var reason string
	rebuild := &cobra.Command{
		Use:   "rebuild [--reason WHY]",
		Short: "Rebuild the model from the whole audit log",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return monitorCall(cmd, g, "POST", "/v1/monitor/rebuild", server.IncidentRequest{Reason: reason})
		},
	}
	rebuild.Flags().StringVar(&reason, "reason", "", "why, for the record")
	cmd.AddCommand(status, rebuild, newMonitorReplayCmd(g))
	return cmd
}

func monitorCall(cmd *cobra.Command, g *globals, method, path string, body any) error {
	c, err := g.admin()
	if err != nil {
		return err
	}
	var out struct {
		Position   int64     `json:"position"`
		Applied    int64     `json:"applied"`
		Skipped    int64     `json:"skipped"`
		CaughtUpAt time.Time `json:"caught_up_at"`
		LogSize    int64     `json:"log_size"`
		Behind     int64     `json:"behind"`
		Dropped    int64     `json:"alerts_dropped"`
	}
	if err := c.do(cmd.Context(), method, path, body, &out); err != nil {
		return err
	}
	if g.format == "json" {
		return g.printJSON(out)
	}
	fmt.Fprintf(g.out, "read up to entry %d of %d (%d behind); %d events learnt from, %d entries unreadable, %d alerts dropped for a full queue\n",
		out.Position, out.LogSize, out.Behind, out.Applied, out.Skipped, out.Dropped)
	if !out.CaughtUpAt.IsZero() && out.CaughtUpAt.Unix() > 0 {
		fmt.Fprintf(g.out, "last at the log's end: %s\n", out.CaughtUpAt.Format(time.RFC3339Nano))
	}
	return nil
}
