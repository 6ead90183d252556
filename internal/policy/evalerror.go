package policy

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// bounded runs eval under the engine's timeout and returns when it ends or
// when the timeout passes, whichever is first, with its error classified.
//
// OPA checks for cancellation between expressions, and in a few builtins
// as they run; one call of another builtin over large arguments
// (json.marshal of a few MiB of data) runs to its end whatever the
// deadline. So the evaluation runs on its own goroutine, and a decision
// that reaches its timeout is a deny at once, while the call it was in
// finishes in the background and is then stopped at its next expression.
// At most maxOverrun evaluations of an engine may be running past their
// timeout: past that, evaluations are refused, as timed out, until some
// end, so a slow version cannot pile up work. The bundle and input limits
// bound how long one call can run.
func (e *Engine) bounded(ctx context.Context, eval func(context.Context) error) error {
	if n := e.overrun.Load(); n >= e.maxOverrun {
		return fmt.Errorf("%w: %d evaluations of this version are still running past their timeout", ErrTimeout, n)
	}
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	const running, finished, abandoned = 0, 1, 2
	var state atomic.Int32
	var err error
	done := make(chan struct{})
	e.evaluators.run(func() {
		err = eval(ctx)
		if !state.CompareAndSwap(running, finished) {
			e.overrun.Add(-1) // the caller gave up on it
		}
		close(done)
	})
	select {
	case <-done:
	case <-ctx.Done():
		e.overrun.Add(1)
		if state.CompareAndSwap(running, abandoned) {
			return classify(ctx, fmt.Errorf("still running at the timeout: %w", ctx.Err()))
		}
		e.overrun.Add(-1) // it finished meanwhile
		<-done
	}
	if err != nil {
		return classify(ctx, err)
	}
	return nil
}

// evaluators runs evaluations on goroutines that stay for more. OPA's
// evaluation is deeply recursive: on a fresh goroutine its stack is grown
// (copied) several times in every evaluation, which took longer than the
// evaluation of a small policy. A goroutine that has evaluated before has
// the stack already. Idle ones end after evaluatorIdle, so an engine no
// longer used keeps none.
type evaluators struct {
	work chan func() // unbuffered: a send succeeds only to an idle goroutine
}

const evaluatorIdle = 10 * time.Second

func (p *evaluators) run(job func()) {
	select {
	case p.work <- job:
	default:
		go p.evaluate(job)
	}
}

func (p *evaluators) evaluate(job func()) {
	idle := time.NewTimer(evaluatorIdle)
	defer idle.Stop()
	for {
		job()
		idle.Reset(evaluatorIdle)
		select {
		case job = <-p.work:
		case <-idle.C:
			return
		}
	}
}

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
