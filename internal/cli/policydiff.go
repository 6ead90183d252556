package cli

import (
	"fmt"
	"io"
	"slices"

	"github.com/spf13/cobra"

	"github.com/warden-run/warden/internal/policy"
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
			changes := policy.DiffFiles(a, b)
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
					writeHunks(g.out, c.Lines)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&patch, "patch", false, "print the changed lines")
	return cmd
}

// writeHunks prints the changed lines with up to two lines of context.
func writeHunks(w io.Writer, lines []policy.DiffLine) {
	const context = 2
	show := make([]bool, len(lines))
	for i, l := range lines {
		if l.Op != ' ' {
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
		fmt.Fprintf(w, "    %c %s\n", l.Op, l.Text)
	}
}
