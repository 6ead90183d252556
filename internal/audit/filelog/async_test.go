package filelog_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/audittest"
	"github.com/warden-run/warden/internal/audit/filelog"
)

// gatedBackend holds every Append until the gate opens, and says when one
// is waiting.
type gatedBackend struct {
	audit.Backend
	gate    chan struct{}
	waiting chan struct{}
}

func (g *gatedBackend) Append(ctx context.Context, es []*audit.Entry) error {
	select {
	case g.waiting <- struct{}{}:
	default:
	}
	<-g.gate
	return g.Backend.Append(ctx, es)
}

// TestAsyncModeFailsClosedWhenFull: in async mode an append returns once
// queued; when the queue is full the entry is refused, never dropped.
func TestAsyncModeFailsClosedWhenFull(t *testing.T) {
	t.Parallel()
	b, err := filelog.Open(filelog.Config{Dir: filepath.Join(t.TempDir(), "audit")})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	g := &gatedBackend{Backend: b, gate: make(chan struct{}), waiting: make(chan struct{}, 1)}
	l, err := audit.Open(audit.Config{Mode: audit.ModeAsync, AsyncBuffer: 4}, g, audittest.Signer(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// One entry goes to the writer, which then waits at the gate.
	if _, err := l.Append(ctx, audittest.Entry(0)); err != nil {
		t.Fatal(err)
	}
	<-g.waiting
	accepted, refused := 1, 0
	for i := 1; i < 10; i++ {
		_, err := l.Append(ctx, audittest.Entry(i))
		switch {
		case err == nil:
			accepted++
		case errors.Is(err, audit.ErrBufferFull):
			refused++
		default:
			t.Fatal(err)
		}
	}
	// The writer holds one entry at the gate; the queue takes four more.
	if accepted != 5 || refused != 5 {
		t.Fatalf("%d accepted, %d refused with a queue of 4", accepted, refused)
	}
	close(g.gate)
	l.Close()
	if size, _ := b.Size(ctx); size != int64(accepted) {
		t.Fatalf("%d accepted but %d stored", accepted, size)
	}
}
