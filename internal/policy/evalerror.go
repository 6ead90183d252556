package policy

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// classify turns an evaluation error into one of the engine's errors, with
// a description that holds no value of the input or the data.
func classify(ctx context.Context, err error) error {
	var te *topdown.Error
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("%w: %s", ErrTimeout, describe(err))
	case errors.As(err, &te) && te.Code == topdown.ConflictErr:
		return fmt.Errorf("%w: %s", ErrConflict, describe(err))
	}
	return fmt.Errorf("%w: %s", ErrEvaluation, describe(err))
}

// operandPrefix is how OPA starts the message of an error about one
// operand of a builtin: "operand 2 must be ...".
var operandPrefix = regexp.MustCompile(`^operand ([0-9]{1,2}) `)

// describe says where evaluation failed and how, without what it failed
// on. OPA writes a builtin's arguments into its error messages
// (`to_number: strconv.ParseFloat: parsing "hunter2": invalid syntax`),
// and an argument can be a secret of the input (a password in a tool's
// arguments); an engine error reaches logs and replies. So only the
// location, OPA's error code, the builtin's name and, for an operand, its
// position are kept, never OPA's message.
func describe(err error) string {
	var te *topdown.Error
	if !errors.As(err, &te) {
		// Not a topdown error (a cancelled context, a storage error): it
		// carries no value of the input.
		return err.Error()
	}
	var b strings.Builder
	if l := te.Location; l != nil {
		fmt.Fprintf(&b, "%s:%d:%d: ", l.File, l.Row, l.Col)
	}
	b.WriteString(te.Code)
	switch te.Code {
	case topdown.BuiltinErr, topdown.TypeErr:
		name, rest, _ := strings.Cut(te.Message, ": ")
		if _, known := ast.BuiltinMap[name]; !known {
			b.WriteString(": a builtin failed")
			break
		}
		b.WriteString(": " + name)
		if m := operandPrefix.FindStringSubmatch(rest); m != nil {
			b.WriteString(": operand " + m[1] + " is not valid")
		} else if te.Code == topdown.TypeErr {
			b.WriteString(": an operand is not valid")
		} else {
			b.WriteString(": it failed on its arguments")
		}
		b.WriteString(" (values are not shown)")
	case topdown.ConflictErr:
		b.WriteString(": rules gave conflicting values")
	case topdown.CancelErr:
		b.WriteString(": evaluation stopped")
	}
	return b.String()
}

// inputError says that the input cannot be given to the policy, without
// OPA's message, which may quote the value.
func inputError(error) error {
	return fmt.Errorf("%w: input: not a value the policy can read (a number out of range, or not JSON)", ErrEvaluation)
}
