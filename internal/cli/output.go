package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/warden-run/warden/internal/audit"
)

// What the CLI prints comes in large part from agents (actions, resource
// ids, reasons, tool names) and lands on a terminal. Text output shows
// every character that is not graphic as an escape (audit.Visible): no
// escape sequence reaches the terminal, and no value can start a line or
// a column of its own. JSON output is the same JSON value with such
// characters \u-escaped (audit.VisibleJSON).

// printJSON writes v as indented JSON.
func (g *globals) printJSON(v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := g.out.Write(audit.VisibleJSON(b.Bytes()))
	return err
}

// table writes rows as aligned text columns.
func (g *globals) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = audit.Visible(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// visibleLines is audit.Visible line by line: for messages of several
// lines, such as errors.
func visibleLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = audit.Visible(l)
	}
	return strings.Join(lines, "\n")
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.RFC3339)
}
