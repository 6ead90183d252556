package cli

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/warden-run/warden/internal/policy"
)

func newPolicyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Test, version, activate and roll back policy bundles",
	}
	cmd.AddCommand(newPolicyTestCmd(g), newPolicyPushCmd(g), newPolicyListCmd(g), newPolicyShowCmd(g), newPolicyDiffCmd(g),
		newPolicyActivateCmd(g), newPolicyRollbackCmd(g), newPolicyShadowCmd(g), newPolicyReplayCmd(g), newPolicyTestWorkerCmd())
	return cmd
}

// newPolicyTestWorkerCmd is the worker process in which the server runs a
// pushed bundle's tests, within policy.tests' memory limit. It is started
// by the server (testWorker), not by hand.
func newPolicyTestWorkerCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "test-worker",
		Short:  "Run one pushed bundle's tests for the server, within its limits (internal)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return policy.RunTestWorker(cmd.Context(), os.Stdin, os.Stdout)
		},
	}
}

// testWorker is the command of the server's test worker: this binary. On
// Linux /proc/self/exe is the running binary even after a package upgrade
// replaced the file, so the worker always matches the server.
func testWorker() ([]string, error) {
	exe := "/proc/self/exe"
	if runtime.GOOS != "linux" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("finding the warden binary for policy test runs: %w", err)
		}
	}
	return []string{exe, "policy", "test-worker"}, nil
}

func newPolicyTestCmd(g *globals) *cobra.Command {
	var (
		opts    policy.TestOptions
		format  string
		verbose bool
	)
	cmd := &cobra.Command{
		Use:   "test DIR",
		Short: "Run a bundle's Rego unit tests and decision cases",
		Long: `Run a bundle's Rego unit tests with OPA's test runner (as opa test: test_
rules, 'with' mocking, todo_test_ rules skipped) and then its decision cases
(cases/*.yaml) on the engine that would serve the bundle.

Exit status: 0 when every test and case passes (skipped tests do not fail
the run) and coverage meets --threshold; 1 when one does not, or the bundle
does not compile; 2 when the tests could not run (bad flags, unreadable
directory).`,
		Example: `  warden policy test policies/finance
  warden policy test policies/finance --coverage --threshold 80
  warden policy test policies/finance --format junit > report.xml`,
		Args: func(cmd *cobra.Command, args []string) error {
			return cannotRun(g, cobra.ExactArgs(1)(cmd, args))
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "json" && format != "junit" {
				return cannotRun(g, fmt.Errorf("--format %q: want text, json or junit", format))
			}
			b, err := policy.LoadDir(args[0])
			if errors.Is(err, policy.ErrInvalidBundle) {
				// Read, but not a valid bundle: a failure, like a failing test.
				fmt.Fprintln(g.errOut, "warden:", err)
				return exitError(1)
			}
			if err != nil {
				return cannotRun(g, err)
			}
			rep, err := policy.Test(cmd.Context(), b, opts)
			if err != nil {
				// A bundle that does not compile fails, like a failing test.
				fmt.Fprintln(g.errOut, "warden:", err)
				return exitError(1)
			}
			switch format {
			case "json":
				err = g.printJSON(rep)
			case "junit":
				err = rep.WriteJUnit(g.out)
			default:
				err = rep.WriteText(g.out, verbose)
			}
			if err != nil {
				return err
			}
			if !rep.Passed {
				return exitError(1)
			}
			return nil
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cannotRun(g, err) })
	fl := cmd.Flags()
	fl.BoolVar(&opts.Coverage, "coverage", false, "measure which lines the unit tests evaluate")
	fl.Float64Var(&opts.Threshold, "threshold", 0, "fail when coverage is below this percentage (implies --coverage)")
	fl.StringVar(&opts.Run, "run", "", "only unit tests whose names match this regular expression")
	fl.DurationVar(&opts.Timeout, "timeout", 0, "time limit of each unit test (default 5s)")
	fl.DurationVar(&opts.Engine.Timeout, "policy-timeout", policy.DefaultTimeout, "time limit of one evaluation in the decision cases, as the server's policy.timeout")
	fl.StringVar(&format, "format", "text", "text, json or junit")
	fl.BoolVarP(&verbose, "verbose", "v", false, "list passing tests and cases too")
	return cmd
}

// cannotRun turns an error that kept a command from running into exit
// status 2, which scripts can tell from a failure (status 1).
func cannotRun(g *globals, err error) error {
	var ee exitError
	if err == nil || errors.As(err, &ee) {
		return err
	}
	fmt.Fprintln(g.errOut, "warden:", err)
	return exitError(2)
}
