package cli

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/policy"
)

func newPolicyReplayCmd(g *globals) *cobra.Command {
	var (
		since    time.Duration
		from     string
		examples int
	)
	cmd := &cobra.Command{
		Use:   "replay DIR",
		Short: "Impact analysis: what the bundle in DIR would have decided on recorded traffic",
		Long: `Re-evaluate the decisions recorded in the audit log over the last --since on
the bundle in DIR, here, and report per agent and action the decisions that
would flip (allow->deny, deny->allow, ...), with examples. The inputs are
the ones recorded (decide.record_input), with the resource attributes of the
candidate's catalog and the clock at each decision's time. Decisions without
a recorded input are counted and skipped; inputs with redacted values are
counted, as their replay may differ.

--from reads an export (warden audit export) instead of the server.`,
		Example: `  warden policy replay policies/finance --since 24h`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			b, err := policy.LoadDir(args[0])
			if err != nil {
				return err
			}
			engine, err := policy.Compile(ctx, b, policy.EngineConfig{})
			if err != nil {
				return err
			}
			r := policy.NewReplayer(engine, examples)
			start := time.Now().Add(-since)
			add := func(e *audit.Entry) {
				if e.Kind != audit.KindDecision || e.Time.Before(start) {
					return
				}
				r.Add(ctx, policy.Recorded{DecisionID: e.DecisionID, Agent: e.Agent, Action: e.Action, Resource: e.Resource,
					Outcome: policy.Outcome(e.Outcome), Reasons: e.Reasons, Input: e.Input})
			}
			if from != "" {
				err = replayExport(from, add)
			} else {
				err = replayServer(cmd, g, start, add)
			}
			if err != nil {
				return err
			}
			rep := r.Report()
			if g.format == "json" {
				return g.printJSON(rep)
			}
			fmt.Fprintf(g.out, "Decisions since %s\n", start.Local().Format(time.RFC3339))
			visibleReplay(rep)
			return rep.WriteText(g.out)
		},
	}
	fl := cmd.Flags()
	fl.DurationVar(&since, "since", 24*time.Hour, "how far back to replay")
	fl.StringVar(&from, "from", "", "read the decisions from this export instead of the server")
	fl.IntVar(&examples, "examples", 3, "examples shown per agent and action")
	return cmd
}

func replayServer(cmd *cobra.Command, g *globals, start time.Time, add func(*audit.Entry)) error {
	return readEntries(cmd, g, url.Values{"kind": {"decision"}, "since": {start.UTC().Format(time.RFC3339)}}, add)
}

// readEntries reads every entry the query q selects from the server, in
// pages, and hands each to add.
func readEntries(cmd *cobra.Command, g *globals, q url.Values, add func(*audit.Entry)) error {
	c, err := g.admin()
	if err != nil {
		return err
	}
	after := int64(-1)
	for {
		page, next, _, err := fetchEntries(cmd.Context(), c, q, after, 1000)
		if err != nil {
			return err
		}
		for _, raw := range page {
			e, err := audit.DecodeEntry(raw)
			if err != nil {
				return fmt.Errorf("an entry from the server: %w", err)
			}
			add(e)
		}
		if next < 0 {
			return nil
		}
		after = next
	}
}

func replayExport(path string, add func(*audit.Entry)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	src := audit.ReadExport(f)
	for {
		it, err := src.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if it.Checkpoint {
			continue
		}
		e, err := audit.DecodeEntry(it.Data)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		add(e)
	}
}

// visibleReplay escapes, for a terminal, what agents chose in a replay
// report's text (see audit.Visible); reasons are printed quoted already.
func visibleReplay(rep *policy.ReplayReport) {
	for i := range rep.Flips {
		f := &rep.Flips[i]
		f.Agent, f.Action = audit.Visible(f.Agent), audit.Visible(f.Action)
		for j := range f.Examples {
			ex := &f.Examples[j]
			ex.DecisionID, ex.Time = audit.Visible(ex.DecisionID), audit.Visible(ex.Time)
			ex.Resource = audit.VisibleJSON(ex.Resource)
		}
	}
}
