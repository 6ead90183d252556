package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
)

func newPolicyPushCmd(g *globals) *cobra.Command {
	var (
		message  string
		activate bool
		wait     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "push DIR",
		Short: "Store a bundle as a new version, after the server has compiled and tested it",
		Long: `Send the bundle in DIR to the server, which compiles it and runs its tests and
decision cases; only if everything passes is it stored, as a version named by
the SHA-256 of its content, with you as author, the message and the active
version as parent. --activate also makes it live. Pushing content that is
already stored changes nothing and names the stored version.`,
		Example: `  warden policy push policies/finance --message "tighten order limits" --activate`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if message == "" {
				return errors.New("--message is required: say what this version changes")
			}
			b, err := policy.LoadDir(args[0])
			if err != nil {
				return err
			}
			files := make(map[string]string, len(b.Files))
			for p, c := range b.Files {
				files[p] = string(c)
			}
			c, err := g.admin()
			if err != nil {
				return err
			}
			c.waitFor(wait)
			var out struct {
				Version store.PolicyVersion `json:"version"`
				Created bool                `json:"created"`
				Tests   policy.Counts       `json:"tests"`
				State   *store.PolicyState  `json:"state"`
			}
			err = c.do(cmd.Context(), "POST", "/v1/policies", map[string]any{"files": files, "message": message, "activate": activate}, &out)
			if err != nil {
				return g.policyRefusal(err)
			}
			if g.format == "json" {
				return g.printJSON(out)
			}
			if out.Created {
				fmt.Fprintf(g.out, "pushed %s (%d tests and %d cases passed)\n", out.Version.ID, out.Tests.Pass, out.Tests.CasesPass)
			} else {
				fmt.Fprintf(g.out, "already stored: %s\n", out.Version.ID)
			}
			if out.State != nil {
				fmt.Fprintf(g.out, "active: %s\n", out.State.Active)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&message, "message", "m", "", "what this version changes (required)")
	cmd.Flags().BoolVar(&activate, "activate", false, "make the version live once stored")
	cmd.Flags().DurationVar(&wait, "wait", testRunWait, "how long to wait for the server, which runs the tests (twice with --activate)")
	return cmd
}

// testRunWait is how long push and activate wait for the server by
// default: its test runs take up to policy.tests.timeout (1m by default)
// each.
const testRunWait = 5 * time.Minute

// policyRefusal prints the test report of a bundle the server refused for
// failing tests, and exits 1.
func (g *globals) policyRefusal(err error) error {
	var ae *apiError
	if !errors.As(err, &ae) || ae.Code != "tests_failed" || len(ae.Report) == 0 {
		return err
	}
	var rep policy.TestReport
	if json.Unmarshal(ae.Report, &rep) != nil {
		return err
	}
	if g.format == "json" {
		g.printJSON(map[string]any{"error": ae.Code, "message": ae.Message, "report": rep})
	} else {
		fmt.Fprintln(g.errOut, "warden: the server refused the bundle: its tests fail")
		rep.WriteText(g.errOut, false)
	}
	return exitError(1)
}

func newPolicyListCmd(g *globals) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List stored versions, newest first, and which are live",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.admin()
			if err != nil {
				return err
			}
			var out struct {
				Versions []store.PolicyVersion `json:"versions"`
				State    store.PolicyState     `json:"state"`
			}
			if err := c.do(cmd.Context(), "GET", fmt.Sprintf("/v1/policies?limit=%d", limit), nil, &out); err != nil {
				return err
			}
			if g.format == "json" {
				return g.printJSON(out)
			}
			rows := [][]string{}
			for _, v := range out.Versions {
				live := ""
				switch v.ID {
				case out.State.Active:
					live = "active"
				case out.State.Shadow:
					live = "shadow"
				}
				rows = append(rows, []string{shortVersion(v.ID), live, fmtTime(v.CreatedAt), v.Author, v.Message})
			}
			return g.table([]string{"VERSION", "LIVE", "PUSHED", "AUTHOR", "MESSAGE"}, rows)
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 50, "at most this many (1 to 1000)")
	return cmd
}

func newPolicyShowCmd(g *globals) *cobra.Command {
	var files bool
	cmd := &cobra.Command{
		Use:   "show VERSION",
		Short: "Show one version: author, message, parent, files; --files prints their content",
		Long: `Show one version. VERSION is a digest, a unique prefix of one (with or without
"sha256:"), "active" or "shadow".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.admin()
			if err != nil {
				return err
			}
			v, fs, err := fetchVersion(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			if g.format == "json" {
				return g.printJSON(map[string]any{"version": v, "files": fs})
			}
			fmt.Fprintf(g.out, "version  %s\nauthor   %s\npushed   %s\nparent   %s\nmessage  %s\nfiles\n", v.ID, audit.Visible(v.Author), fmtTime(v.CreatedAt), orDash(v.Parent), visibleLines(v.Message))
			b := &policy.Bundle{Files: map[string][]byte{}}
			for p, c := range fs {
				b.Files[p] = []byte(c)
			}
			for _, p := range b.Paths() {
				fmt.Fprintf(g.out, "  %-40s %6d bytes\n", p, len(fs[p]))
				if files {
					fmt.Fprintf(g.out, "%s\n", indentBlock(fs[p]))
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&files, "files", false, "print every file's content")
	return cmd
}

func newPolicyActivateCmd(g *globals) *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "activate VERSION",
		Short: "Make a stored version live, after its tests pass again on this server",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.admin()
			if err != nil {
				return err
			}
			id, err := resolveVersion(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			c.waitFor(wait)
			return g.stateChange(cmd.Context(), c, "POST", "/v1/policies/"+url.PathEscape(id)+"/activate", nil)
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", testRunWait, "how long to wait for the server, which runs the tests")
	return cmd
}

func newPolicyRollbackCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rollback",
		Short: "Go back to the version that was active before the current one",
		Long: `Go back, in one step, to the version that was active before the current
activation. Rolling back again goes further back. Recorded in the audit log.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.admin()
			if err != nil {
				return err
			}
			return g.stateChange(cmd.Context(), c, "POST", "/v1/policies/rollback", nil)
		},
	}
}

func newPolicyShadowCmd(g *globals) *cobra.Command {
	var clear bool
	cmd := &cobra.Command{
		Use:   "shadow [VERSION]",
		Short: "Evaluate a version beside the active one on live traffic, never enforced",
		Long: `Attach a stored version as the shadow: every decision is evaluated on it too,
after the answer, and every disagreement with the active version is recorded
in the audit log (kind policy, action policy.shadow_disagreement) with both
outcomes. Without VERSION, show the shadow and its counts; --clear detaches it.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.admin()
			if err != nil {
				return err
			}
			switch {
			case clear:
				return g.stateChange(cmd.Context(), c, "DELETE", "/v1/policies/shadow", nil)
			case len(args) == 1:
				id, err := resolveVersion(cmd.Context(), c, args[0])
				if err != nil {
					return err
				}
				return g.stateChange(cmd.Context(), c, "PUT", "/v1/policies/shadow", map[string]string{"version": id})
			}
			var out map[string]any
			if err := c.do(cmd.Context(), "GET", "/v1/policies/shadow", nil, &out); err != nil {
				return err
			}
			return g.printJSON(out)
		},
	}
	cmd.Flags().BoolVar(&clear, "clear", false, "detach the shadow version")
	return cmd
}

// stateChange calls an endpoint that answers the live state, and prints it.
func (g *globals) stateChange(ctx context.Context, c *adminClient, method, path string, body any) error {
	var out struct {
		State store.PolicyState `json:"state"`
	}
	if err := c.do(ctx, method, path, body, &out); err != nil {
		return g.policyRefusal(err)
	}
	if g.format == "json" {
		return g.printJSON(out)
	}
	fmt.Fprintf(g.out, "active  %s\n", orDash(out.State.Active))
	if out.State.Shadow != "" {
		fmt.Fprintf(g.out, "shadow  %s\n", out.State.Shadow)
	}
	return nil
}

// resolveVersion turns "active", "shadow", a digest or a unique prefix of
// one into a version id.
func resolveVersion(ctx context.Context, c *adminClient, arg string) (string, error) {
	var out struct {
		Versions []store.PolicyVersion `json:"versions"`
		State    store.PolicyState     `json:"state"`
	}
	if err := c.do(ctx, "GET", "/v1/policies?limit=1000", nil, &out); err != nil {
		return "", err
	}
	switch arg {
	case "active", "shadow":
		id := out.State.Active
		if arg == "shadow" {
			id = out.State.Shadow
		}
		if id == "" {
			return "", fmt.Errorf("there is no %s version", arg)
		}
		return id, nil
	}
	want := arg
	if !strings.HasPrefix(want, "sha256:") {
		want = "sha256:" + want
	}
	var found []string
	for _, v := range out.Versions {
		if strings.HasPrefix(v.ID, want) {
			found = append(found, v.ID)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		return "", fmt.Errorf("%q names %d versions; give more of the digest", arg, len(found))
	case len(want) == len("sha256:")+64:
		return want, nil // maybe older than the newest 1000: let the server say
	}
	return "", fmt.Errorf("no stored version starts with %q", arg)
}

// fetchVersion returns a stored version and its files.
func fetchVersion(ctx context.Context, c *adminClient, arg string) (store.PolicyVersion, map[string]string, error) {
	id, err := resolveVersion(ctx, c, arg)
	if err != nil {
		return store.PolicyVersion{}, nil, err
	}
	var out struct {
		Version store.PolicyVersion `json:"version"`
		Files   map[string]string   `json:"files"`
	}
	if err := c.do(ctx, "GET", "/v1/policies/"+url.PathEscape(id), nil, &out); err != nil {
		return store.PolicyVersion{}, nil, err
	}
	return out.Version, out.Files, nil
}

// bundleFiles reads a side of a diff: a directory on disk, or a stored version.
func bundleFiles(ctx context.Context, g *globals, arg string) (string, map[string]string, error) {
	if st, err := os.Stat(arg); err == nil && st.IsDir() {
		b, err := policy.LoadDir(arg)
		if err != nil {
			return "", nil, err
		}
		fs := make(map[string]string, len(b.Files))
		for p, c := range b.Files {
			fs[p] = string(c)
		}
		return arg + " (" + shortVersion(b.Digest()) + ")", fs, nil
	}
	c, err := g.admin()
	if err != nil {
		return "", nil, err
	}
	v, fs, err := fetchVersion(ctx, c, arg)
	if err != nil {
		return "", nil, err
	}
	return shortVersion(v.ID), fs, nil
}

func shortVersion(id string) string {
	if len(id) > len("sha256:")+12 {
		return id[:len("sha256:")+12]
	}
	return id
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func indentBlock(s string) string {
	return "    | " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    | ")
}
