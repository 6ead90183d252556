package policy

import (
	"context"
	"errors"
	"testing"
	"time"
)

// While as many evaluations as allowed run past their timeout, a new one
// waits for one of them to end (and starts then), or for its own timeout.
func TestOverrunGate(t *testing.T) {
	t.Parallel()
	g := newOverrunGate(2)
	g.add()
	g.add()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("full gate, context over: %v, want its error", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- g.wait(context.Background()) }()
	select {
	case err := <-waited:
		t.Fatalf("passed a full gate: %v", err)
	case <-time.After(50 * time.Millisecond): // still waiting, as it should
	}
	g.done()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute): // only so that the test cannot hang
		t.Fatal("an evaluation still waits after an overrunning one ended")
	}
	if g.count() != 1 {
		t.Fatalf("count %d, want 1", g.count())
	}
}
