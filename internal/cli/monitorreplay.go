package cli

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/monitor"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/respond"
)

// monitorReplay is what a replay of recorded traffic found.
type monitorReplay struct {
	Since     time.Time              `json:"since"`
	WarmFrom  time.Time              `json:"warm_up_from"`
	Entries   int                    `json:"entries"`
	Agents    int                    `json:"agents"`
	Signals   map[string]int         `json:"signals"`
	Incidents []*respond.DryIncident `json:"incidents"`
	Playbook  string                 `json:"playbook_version"`
	Failures  int                    `json:"playbook_failures"`
}

func newMonitorReplayCmd(g *globals) *cobra.Command {
	var (
		since, warmup time.Duration
		cfgPath, from string
	)
	cmd := &cobra.Command{
		Use:   "replay [BUNDLE]",
		Short: "Dry run: what other thresholds, and a playbook, would have done on recorded traffic",
		Long: `Replay the audit log's entries into a fresh behavioural model, with the
thresholds of --config (warden.yaml's monitor section; the defaults without
it), here, and evaluate the playbook (warden.response) of BUNDLE (a bundle
directory, or a stored version: a digest, "active" or "shadow"; default the
active one) on every alert of the last --since, as the responder would,
acting on nothing. The model first learns from the --warmup before that
(default: the model's forget window), so that agents are judged against their
baselines. It reports the signals that would have fired and the incidents that
would have opened, with the actions the playbook would have taken.

--from reads an export (warden audit export) instead of the server.`,
		Example: `  warden monitor replay --since 24h --config warden-next.yaml
  warden monitor replay policies/finance --since 24h`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			ref := "active"
			if len(args) == 1 {
				ref = args[0]
			}
			_, files, err := bundleFiles(ctx, g, ref)
			if err != nil {
				return err
			}
			b := &policy.Bundle{Files: make(map[string][]byte, len(files))}
			for p, c := range files {
				b.Files[p] = []byte(c)
			}
			engine, err := policy.Compile(ctx, b, policy.EngineConfig{})
			if err != nil {
				return err
			}
			mc := monitor.Config{}
			if cfgPath != "" {
				c := config.Default()
				if err := config.LoadFile(&c, cfgPath); err != nil {
					return err
				}
				mc = c.Monitor.Model
			}
			model, err := monitor.NewModel(mc)
			if err != nil {
				return err
			}
			if warmup == 0 {
				warmup = monitor.Defaults.Forget
				if mc.Forget > 0 {
					warmup = mc.Forget
				}
			}
			rep := &monitorReplay{Since: time.Now().Add(-since).UTC(), Signals: map[string]int{}, Playbook: engine.Version()}
			rep.WarmFrom = rep.Since.Add(-warmup)
			dry := respond.NewDryRun(engine)
			agents := map[string]bool{}
			add := func(e *audit.Entry) {
				if e.Time.Before(rep.WarmFrom) {
					return
				}
				rep.Entries++
				ev, ok := monitor.Decode(e)
				if !ok {
					return
				}
				ev.Index = e.Index
				fired := model.Apply(ev)
				if ev.Time.Before(rep.Since) {
					return
				}
				agents[ev.Agent] = true
				risk := model.Risk(ev.Agent, ev.Time)
				dry.Observe(ev.Agent, risk)
				for _, s := range fired {
					rep.Signals[s]++
				}
				if len(fired) > 0 {
					if _, _, err := dry.Alert(ctx, monitor.Alert{Event: ev, Signals: fired, Risk: risk}, ev.Roles); err != nil {
						rep.Failures++
					}
				}
			}
			if from != "" {
				err = replayExport(from, add)
			} else {
				err = readEntries(cmd, g, url.Values{"since": {rep.WarmFrom.Format(time.RFC3339)}}, add)
			}
			if err != nil {
				return err
			}
			rep.Agents, rep.Incidents = len(agents), dry.Incidents
			if rep.Incidents == nil {
				rep.Incidents = []*respond.DryIncident{}
			}
			if g.format == "json" {
				return g.printJSON(rep)
			}
			return printMonitorReplay(g, rep)
		},
	}
	fl := cmd.Flags()
	fl.DurationVar(&since, "since", 24*time.Hour, "how far back to report")
	fl.DurationVar(&warmup, "warmup", 0, "how long before --since the model learns first (default: its forget window)")
	fl.StringVar(&cfgPath, "config", "", "a warden.yaml whose monitor section to replay with (default: the defaults)")
	fl.StringVar(&from, "from", "", "read the entries from this export instead of the server")
	return cmd
}

func printMonitorReplay(g *globals, rep *monitorReplay) error {
	fmt.Fprintf(g.out, "Since %s (the model learnt from %s): %d entries, %d agents; playbook %s\n",
		rep.Since.Local().Format(time.RFC3339), rep.WarmFrom.Local().Format(time.RFC3339), rep.Entries, rep.Agents, short19(rep.Playbook))
	if rep.Failures > 0 {
		fmt.Fprintf(g.out, "the playbook failed on %d alerts (the responder would have fallen back to alert, and quarantine at critical)\n", rep.Failures)
	}
	var names []string
	for n := range rep.Signals {
		names = append(names, n)
	}
	slices.Sort(names)
	var fired []string
	for _, n := range names {
		fired = append(fired, fmt.Sprintf("%s %d", n, rep.Signals[n]))
	}
	if len(fired) == 0 {
		fmt.Fprintln(g.out, "no signal would have fired")
	} else {
		fmt.Fprintf(g.out, "signals that would have fired: %s\n", strings.Join(fired, ", "))
	}
	if len(rep.Incidents) == 0 {
		fmt.Fprintln(g.out, "no incident would have opened")
		return nil
	}
	fmt.Fprintf(g.out, "%d incidents would have opened:\n", len(rep.Incidents))
	var rows [][]string
	for _, inc := range rep.Incidents {
		rows = append(rows, []string{audit.Visible(inc.Agent), inc.Opened.Local().Format(time.RFC3339), fmt.Sprint(inc.Index), inc.Level,
			strings.Join(inc.Signals, ","), strings.Join(inc.Actions, ",")})
	}
	return g.table([]string{"AGENT", "OPENED", "AUDIT INDEX", "LEVEL", "SIGNALS", "ACTIONS"}, rows)
}

func short19(s string) string {
	if len(s) > 19 {
		return s[:19]
	}
	return s
}
