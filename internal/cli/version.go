package cli

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := version()
			if g.format == "json" {
				return g.printJSON(map[string]string{"version": v})
			}
			fmt.Fprintln(g.out, "warden", v)
			return nil
		},
	}
}

// version is the module version the binary was built at, from the build
// information Go records ("(devel)" without it).
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
