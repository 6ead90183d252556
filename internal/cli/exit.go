package cli

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit statuses, for scripts: what went wrong, not only that something
// did (docs/configuration.md, section 9).
const (
	exitOK          = 0
	exitFailed      = 1 // the command ran and failed: a check, a test, a verification
	exitUsage       = 2 // the command could not run as asked: flags, arguments, input
	exitNotFound    = 3 // what was named does not exist
	exitRefused     = 4 // the server refused: credentials, permission, state
	exitUnavailable = 5 // the server could not be reached or is unavailable
)

// usageError is a mistake in the command line itself.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// unreachableError: the server did not answer.
type unreachableError struct {
	server string
	err    error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("cannot reach the Warden server at %s: %v", e.server, e.err)
}
func (e *unreachableError) Unwrap() error { return e.err }

// exitStatus is the status err ends the command with.
func exitStatus(err error) int {
	var ee exitError
	var ue usageError
	var ae *apiError
	var ne *unreachableError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return int(ee)
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ne):
		return exitUnavailable
	case errors.As(err, &ae):
		switch {
		case ae.Status == http.StatusNotFound:
			return exitNotFound
		case ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden || ae.Status == http.StatusConflict:
			return exitRefused
		case ae.Status == http.StatusTooManyRequests || ae.Status >= 500:
			return exitUnavailable
		case ae.Status == http.StatusBadRequest || ae.Status == http.StatusUnprocessableEntity || ae.Status == http.StatusRequestEntityTooLarge:
			return exitUsage
		}
	case strings.HasPrefix(err.Error(), "unknown command "):
		return exitUsage
	}
	return exitFailed
}

// errorCode names err's kind for --format json.
func errorCode(status int) string {
	switch status {
	case exitUsage:
		return "usage"
	case exitNotFound:
		return "not_found"
	case exitRefused:
		return "refused"
	case exitUnavailable:
		return "unavailable"
	}
	return "failed"
}

// flagError makes cobra's flag errors usage errors, suggesting the flag
// meant when the one given is unknown and close to one the command has.
func flagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
		best, dist := "", 3
		visit := func(f *pflag.Flag) {
			if d := editDistance(name, f.Name); d < dist {
				best, dist = f.Name, d
			}
		}
		cmd.Flags().VisitAll(visit)
		cmd.InheritedFlags().VisitAll(visit)
		if best != "" {
			msg += fmt.Sprintf(" (did you mean --%s?)", best)
		}
	}
	return usageError{fmt.Errorf("%s; see %s --help", msg, cmd.CommandPath())}
}

// argsAsUsage makes the argument checks of cmd and its subcommands usage
// errors.
func argsAsUsage(cmd *cobra.Command) {
	if check := cmd.Args; check != nil {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if err := check(c, args); err != nil {
				return usageError{fmt.Errorf("%v; see %s --help", err, c.CommandPath())}
			}
			return nil
		}
	}
	for _, sub := range cmd.Commands() {
		argsAsUsage(sub)
	}
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
