package cli

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
)

func newPolicyDiffCmd(g *globals) *cobra.Command {
	var patch bool
	cmd := &cobra.Command{
		Use:   "diff A B",
		Short: "Show the files that differ between two versions (or bundle directories)",
		Long: `Show which files B adds, removes and changes relative to A, with the lines
added and removed; --patch prints the changed lines too. A and B are stored
versions (a digest, a unique prefix, "active" or "shadow") or bundle
directories on disk.`,
		Example: `  warden policy diff active policies/finance --patch`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			nameA, a, err := bundleFiles(cmd.Context(), g, args[0])
			if err != nil {
				return err
			}
			nameB, b, err := bundleFiles(cmd.Context(), g, args[1])
			if err != nil {
				return err
			}
			changes := diffBundles(a, b)
			if g.format == "json" {
				return g.printJSON(map[string]any{"from": nameA, "to": nameB, "files": changes})
			}
			fmt.Fprintf(g.out, "from %s\nto   %s\n", nameA, nameB)
			if len(changes) == 0 {
				fmt.Fprintln(g.out, "no differences")
			}
			for _, c := range changes {
				fmt.Fprintf(g.out, "%s %-40s +%d -%d\n", c.Status, c.Path, c.Added, c.Removed)
				if patch {
					writeHunks(g.out, c.lines)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&patch, "patch", false, "print the changed lines")
	return cmd
}

// fileChange is one file that differs between two bundles.
type fileChange struct {
	Path    string `json:"path"`
	Status  string `json:"status"` // A added, D deleted, M modified
	Added   int    `json:"added"`
	Removed int    `json:"removed"`
	lines   []diffLine
}

func diffBundles(a, b map[string]string) []fileChange {
	paths := map[string]bool{}
	for p := range a {
		paths[p] = true
	}
	for p := range b {
		paths[p] = true
	}
	var out []fileChange
	for _, p := range sortedKeys(paths) {
		x, inA := a[p]
		y, inB := b[p]
		if inA && inB && x == y {
			continue
		}
		c := fileChange{Path: p, Status: "M"}
		switch {
		case !inA:
			c.Status = "A"
		case !inB:
			c.Status = "D"
		}
		c.lines = diffLines(splitLines(x), splitLines(y))
		for _, l := range c.lines {
			switch l.op {
			case '+':
				c.Added++
			case '-':
				c.Removed++
			}
		}
		out = append(out, c)
	}
	return out
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

type diffLine struct {
	op   byte // ' ', '+' or '-'
	text string
}

// diffLines is a longest-common-subsequence line diff: enough for policy
// files. Very large files are shown as all removed and all added.
func diffLines(a, b []string) []diffLine {
	if len(a)*len(b) > 4_000_000 {
		var out []diffLine
		for _, l := range a {
			out = append(out, diffLine{'-', l})
		}
		for _, l := range b {
			out = append(out, diffLine{'+', l})
		}
		return out
	}
	// lcs[i][j] is the length of the LCS of a[i:] and b[j:].
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []diffLine
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			out = append(out, diffLine{' ', a[i]})
			i, j = i+1, j+1
		case j < len(b) && (i == len(a) || lcs[i][j+1] >= lcs[i+1][j]):
			out = append(out, diffLine{'+', b[j]})
			j++
		default:
			out = append(out, diffLine{'-', a[i]})
			i++
		}
	}
	return out
}

// writeHunks prints the changed lines with up to two lines of context.
func writeHunks(w io.Writer, lines []diffLine) {
	const context = 2
	show := make([]bool, len(lines))
	for i, l := range lines {
		if l.op != ' ' {
			for k := max(0, i-context); k <= min(len(lines)-1, i+context); k++ {
				show[k] = true
			}
		}
	}
	gap := false
	for i, l := range lines {
		if !show[i] {
			gap = true
			continue
		}
		if gap && slices.Contains(show[:i], true) {
			fmt.Fprintln(w, "    ...")
		}
		gap = false
		fmt.Fprintf(w, "    %c %s\n", l.op, l.text)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
