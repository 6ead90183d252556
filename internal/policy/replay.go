package policy

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/warden-run/warden/internal/decide/record"
)

// Recorded is a decision as the audit log recorded it.
type Recorded struct {
	DecisionID string
	Agent      string
	Action     string
	// Resource is the recorded {"kind", "id"}.
	Resource json.RawMessage
	Outcome  Outcome
	Reasons  []string
	// Input is the recorded policy input; empty when it was not recorded.
	Input json.RawMessage
}

// ReplayReport says what a candidate policy would have decided on recorded
// traffic, and where that differs from what was decided.
type ReplayReport struct {
	Version string `json:"version"`
	// Decisions were replayed; Skipped had no recorded input (not recorded
	// by configuration, or the agent was not authenticated).
	Decisions int `json:"decisions"`
	Skipped   int `json:"skipped"`
	// Redacted counts replayed inputs with values left out of the record
	// (redacted, or too large): their replay may differ from what the full
	// input would give.
	Redacted int `json:"redacted"`
	Flipped  int `json:"flipped"`
	// Flips groups the changed decisions by agent and action, most first.
	Flips []FlipGroup `json:"flips"`
}

// FlipGroup is the changed decisions of one agent and action.
type FlipGroup struct {
	Agent  string `json:"agent"`
	Action string `json:"action"`
	// Counts by change, such as "allow->deny".
	Counts   map[string]int `json:"counts"`
	Total    int            `json:"total"`
	Examples []FlipExample  `json:"examples"`
}

// FlipExample is one changed decision.
type FlipExample struct {
	DecisionID string          `json:"decision_id"`
	Time       string          `json:"time"`
	Resource   json.RawMessage `json:"resource,omitempty"`
	Was        Outcome         `json:"was"`
	WasReasons []string        `json:"was_reasons"`
	Now        Outcome         `json:"now"`
	NowReasons []string        `json:"now_reasons"`
}

// Replayer re-evaluates recorded decisions on a candidate engine. Feed it
// with Add, then read Report.
type Replayer struct {
	engine   *Engine
	examples int
	rep      ReplayReport
	groups   map[[2]string]*FlipGroup
}

// NewReplayer replays on e, keeping up to examples changed decisions per group.
func NewReplayer(e *Engine, examples int) *Replayer {
	return &Replayer{engine: e, examples: examples, rep: ReplayReport{Version: e.Version(), Flips: []FlipGroup{}},
		groups: map[[2]string]*FlipGroup{}}
}

// Add replays one recorded decision: its input, with the resource
// attributes of the candidate's catalog, at its recorded time.
func (r *Replayer) Add(ctx context.Context, d Recorded) {
	if len(d.Input) == 0 || string(d.Input) == "null" {
		r.rep.Skipped++
		return
	}
	dec := json.NewDecoder(bytes.NewReader(d.Input))
	dec.UseNumber()
	var input map[string]any
	if err := dec.Decode(&input); err != nil || input == nil {
		r.rep.Skipped++
		return
	}
	r.rep.Decisions++
	if record.Altered(d.Input) {
		r.rep.Redacted++
	}
	c := Case{Input: input}
	res := c.Run(ctx, r.engine)
	if res.Outcome == d.Outcome {
		return
	}
	r.rep.Flipped++
	key := [2]string{d.Agent, d.Action}
	g := r.groups[key]
	if g == nil {
		g = &FlipGroup{Agent: d.Agent, Action: d.Action, Counts: map[string]int{}, Examples: []FlipExample{}}
		r.groups[key] = g
	}
	g.Total++
	g.Counts[string(d.Outcome)+"->"+string(res.Outcome)]++
	if len(g.Examples) < r.examples {
		at := ""
		if cx, ok := input["context"].(map[string]any); ok {
			at, _ = cx["time"].(string)
		}
		g.Examples = append(g.Examples, FlipExample{DecisionID: d.DecisionID, Time: at, Resource: d.Resource,
			Was: d.Outcome, WasReasons: orEmpty(d.Reasons), Now: res.Outcome, NowReasons: res.Reasons})
	}
}

// Report returns what was replayed so far.
func (r *Replayer) Report() *ReplayReport {
	rep := r.rep
	rep.Flips = make([]FlipGroup, 0, len(r.groups))
	for _, g := range r.groups {
		rep.Flips = append(rep.Flips, *g)
	}
	slices.SortFunc(rep.Flips, func(a, b FlipGroup) int {
		return cmp.Or(b.Total-a.Total, strings.Compare(a.Agent, b.Agent), strings.Compare(a.Action, b.Action))
	})
	return &rep
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// WriteText writes the report for a reader: totals, then each group of
// changed decisions with its examples.
func (rep *ReplayReport) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%d decisions replayed on %s: %d would change\n", rep.Decisions, rep.Version, rep.Flipped)
	if rep.Skipped > 0 {
		fmt.Fprintf(&b, "  %d decisions without a recorded input were skipped\n", rep.Skipped)
	}
	if rep.Redacted > 0 {
		fmt.Fprintf(&b, "  %d inputs had redacted values: their replay may differ\n", rep.Redacted)
	}
	for _, g := range rep.Flips {
		fmt.Fprintf(&b, "\n%s  %s\n", g.Agent, g.Action)
		for _, k := range sortedKeys(g.Counts) {
			fmt.Fprintf(&b, "  %-28s %d\n", k, g.Counts[k])
		}
		for _, ex := range g.Examples {
			fmt.Fprintf(&b, "    %s  %s  %s\n", ex.DecisionID, ex.Time, ex.Resource)
			fmt.Fprintf(&b, "      was %s %q, now %s %q\n", ex.Was, ex.WasReasons, ex.Now, ex.NowReasons)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
