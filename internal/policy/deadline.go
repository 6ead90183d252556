package policy

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// bounded runs eval under the engine's timeout and returns when it ends or
// when the timeout passes, whichever is first, with its error classified.
//
// OPA checks for cancellation between expressions, and in a few builtins
// as they run; one call of another builtin over large arguments
// (json.marshal of megabytes of data) runs to its end whatever the
// deadline. So the evaluation runs on a goroutine of its own, and a
// decision that reaches its timeout is a deny at once, while the call it
// was in finishes in the background and OPA then stops at its next
// expression. At most maxOverrun evaluations of an engine may be running
// past their timeout: past that, an evaluation waits for one of them to
// end before it starts, within its own timeout, so that a slow version
// cannot pile up work while a merely busy machine (evaluations that end a
// little late) delays decisions instead of denying them. The bundle and
// input limits bound how long one call can run.
func (e *Engine) bounded(ctx context.Context, eval func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	if err := e.overrun.wait(ctx); err != nil {
		return fmt.Errorf("%w: %d evaluations of this version were still running past their timeout", ErrTimeout, e.overrun.max)
	}
	const running, finished, abandoned = 0, 1, 2
	var state atomic.Int32
	var err error
	done := make(chan struct{})
	e.evaluators.run(func() {
		err = recovered(ctx, eval)
		if !state.CompareAndSwap(running, finished) {
			e.overrun.done() // the caller gave up on it
		}
		close(done)
	})
	select {
	case <-done:
	case <-ctx.Done():
		e.overrun.add()
		if state.CompareAndSwap(running, abandoned) {
			return classify(ctx, fmt.Errorf("still running at the timeout: %w", ctx.Err()))
		}
		e.overrun.done() // it finished meanwhile
		<-done
	}
	if err != nil {
		return classify(ctx, err)
	}
	return nil
}

// recovered runs eval, turning a panic (a builtin's, on some input) into
// an error: the evaluation is a deny, and the process, which serves every
// other agent, goes on. Off the request's goroutine, nothing else would
// recover it.
func recovered(ctx context.Context, eval func(context.Context) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: the evaluation panicked", ErrEvaluation) // the panic's value may hold input
		}
	}()
	return eval(ctx)
}

// overrunGate counts an engine's evaluations running past their timeout,
// and holds new ones back while there are max of them.
type overrunGate struct {
	n     atomic.Int64 // read without the lock on the fast path
	max   int64
	mu    sync.Mutex
	freed chan struct{} // closed, and replaced, whenever n drops
}

func newOverrunGate(max int64) *overrunGate {
	return &overrunGate{max: max, freed: make(chan struct{})}
}

// wait returns when fewer than max evaluations overrun, or ctx's error.
func (g *overrunGate) wait(ctx context.Context) error {
	for {
		if g.n.Load() < g.max {
			return nil
		}
		g.mu.Lock()
		freed := g.freed
		full := g.n.Load() >= g.max
		g.mu.Unlock()
		if !full {
			return nil
		}
		select {
		case <-freed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (g *overrunGate) add() { g.n.Add(1) }

func (g *overrunGate) done() {
	g.mu.Lock()
	g.n.Add(-1)
	close(g.freed)
	g.freed = make(chan struct{})
	g.mu.Unlock()
}

// count is how many evaluations are running past their timeout.
func (g *overrunGate) count() int64 { return g.n.Load() }

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
