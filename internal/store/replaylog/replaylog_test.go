package replaylog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/store"
)

func open(t testing.TB, dir string) *Log {
	t.Helper()
	l, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestRecordsSurviveRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	exp := time.Now().Add(time.Minute)
	l := open(t, dir)
	// Values with separators and newlines cannot forge records.
	values := []string{"plain", "with space", "new\nline", "tab\tand \x00 nul", strings.Repeat("x", 256)}
	for _, v := range values {
		if err := l.MarkUsed(ctx, "client_assertion:ai-agent://dev/a", v, exp); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "in use by another warden process") {
		t.Fatalf("a second process opened the same log: %v", err)
	}
	l.Close()
	l = open(t, dir)
	for _, v := range values {
		if err := l.MarkUsed(ctx, "client_assertion:ai-agent://dev/a", v, exp); !errors.Is(err, store.ErrReplay) {
			t.Fatalf("%q after restart: %v, want ErrReplay", v, err)
		}
	}
	if l.Len() != len(values) {
		t.Fatalf("Len %d", l.Len())
	}
}

func TestTornTailIsCutDamageElsewhereIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	exp := time.Now().Add(time.Minute)
	l := open(t, dir)
	for i := range 3 {
		if err := l.MarkUsed(ctx, "s", fmt.Sprint(i), exp); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	seg, _ := filepath.Glob(filepath.Join(dir, "used-*.log"))
	b, _ := os.ReadFile(seg[0])
	// A crash in the middle of a write leaves half a record (never acknowledged).
	os.WriteFile(seg[0], append(append([]byte{}, b...), []byte(formatLine(key{"s", "torn"}, 1))[:20]...), 0o600)
	l = open(t, dir)
	if l.Len() != 3 {
		t.Fatalf("after a torn tail: %d values", l.Len())
	}
	if err := l.MarkUsed(ctx, "s", "3", exp); err != nil {
		t.Fatalf("append after cutting the tail: %v", err)
	}
	l.Close()
	if l2 := open(t, dir); l2.Len() != 4 {
		t.Fatalf("after reopening: %d values", l2.Len())
	} else {
		l2.Close()
	}
	// A flipped byte inside the log is corruption, not a torn tail.
	b, _ = os.ReadFile(seg[0])
	b[12] ^= 1
	os.WriteFile(seg[0], b, 0o600)
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "record 1") {
		t.Fatalf("corrupt record accepted: %v", err)
	}
}

func TestConcurrentUseOfOneValue(t *testing.T) {
	t.Parallel()
	l := open(t, t.TempDir())
	var ok, replays atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch err := l.MarkUsed(context.Background(), "s", "same", time.Now().Add(time.Minute)); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, store.ErrReplay):
				replays.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 || replays.Load() != 63 {
		t.Fatalf("%d accepted, %d replays", ok.Load(), replays.Load())
	}
}

func TestPruneDropsExpiredValuesAndSegments(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := open(t, dir)
	clock := time.Now()
	l.now = func() time.Time { return clock }
	ctx := context.Background()
	if err := l.MarkUsed(ctx, "s", "old", clock.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(segmentSpan + time.Second) // the next record starts a new segment
	if err := l.MarkUsed(ctx, "s", "new", clock.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if segs, _ := filepath.Glob(filepath.Join(dir, "used-*.log")); len(segs) != 2 {
		t.Fatalf("%d segments", len(segs))
	}
	if err := l.Prune(clock); err != nil {
		t.Fatal(err)
	}
	if segs, _ := filepath.Glob(filepath.Join(dir, "used-*.log")); len(segs) != 1 {
		t.Fatalf("after prune: %d segments", len(segs))
	}
	if err := l.MarkUsed(ctx, "s", "old", clock.Add(time.Minute)); err != nil {
		t.Fatalf("an expired value was not forgotten: %v", err)
	}
	if err := l.MarkUsed(ctx, "s", "new", clock.Add(time.Minute)); !errors.Is(err, store.ErrReplay) {
		t.Fatalf("a live value was forgotten: %v", err)
	}
}

func TestClosedLogRefusesAndForgets(t *testing.T) {
	t.Parallel()
	l := open(t, t.TempDir())
	l.Close()
	if err := l.MarkUsed(context.Background(), "s", "v", time.Now().Add(time.Minute)); err == nil {
		t.Fatal("a closed log recorded a value")
	}
	if l.Len() != 0 {
		t.Fatal("a refused value stayed in memory")
	}
}

// BenchmarkMarkUsed measures durable single-use records from many goroutines.
func BenchmarkMarkUsed(b *testing.B) {
	l := open(b, b.TempDir())
	var n atomic.Int64
	exp := time.Now().Add(time.Minute)
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.MarkUsed(context.Background(), "bench", fmt.Sprint(n.Add(1)), exp); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
