package filelog_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/audittest"
	"github.com/warden-run/warden/internal/audit/filelog"
)

// TestMemoryDoesNotGrowWithTheLog appends hundreds of small segments, with a
// checkpoint every few entries, reads every entry and proves some, and
// reopens: what the log holds in memory (records' places, checkpoints'
// places, open files) stays within one segment's worth, however many
// segments and checkpoints there are.
func TestMemoryDoesNotGrowWithTheLog(t *testing.T) {
	t.Parallel()
	const (
		perSeg   = 16
		segments = 150
		batch    = 4
	)
	dir := filepath.Join(t.TempDir(), "audit")
	s := audittest.Signer(t)
	ctx := context.Background()
	bounded := func(t *testing.T, b *filelog.Log, when string) {
		t.Helper()
		if n := filelog.HeldOffsets(b); n > perSeg+batch {
			t.Errorf("%s: %d record offsets in memory, want at most one segment's (%d)", when, n, perSeg+batch)
		}
		if n := filelog.HeldCheckpoints(b); n > 1 {
			t.Errorf("%s: %d checkpoint places in memory, want at most the latest", when, n)
		}
		if n := filelog.OpenSegmentFiles(b); n > filelog.MaxOpenSealed+1 {
			t.Errorf("%s: %d segment files open, want at most %d", when, n, filelog.MaxOpenSealed+1)
		}
	}
	readAll := func(t *testing.T, l *audit.Log, size int64) {
		t.Helper()
		for from := int64(0); from < size; from += 100 {
			if _, err := l.Read(ctx, from, min(from+100, size)); err != nil {
				t.Fatal(err)
			}
		}
		for i := int64(0); i < size; i += 97 {
			if _, _, err := l.InclusionProof(ctx, i, size); err != nil {
				t.Fatal(err)
			}
		}
		cv, _ := audit.NewCheckpointVerifier(s.VerifierKey())
		src, err := l.Items(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r, err := audit.Verify(src, cv, nil); err != nil || !r.OK() || r.Entries != size {
			t.Fatalf("verify: %+v %v", r, err)
		}
	}

	b, err := filelog.Open(filelog.Config{Dir: dir, SegmentEntries: perSeg})
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(audit.Config{CheckpointEvery: 8, CheckpointInterval: time.Millisecond}, b, s)
	if err != nil {
		t.Fatal(err)
	}
	const n = perSeg * segments
	for i := 0; i < n; i += batch {
		es := make([]*audit.Entry, batch)
		for k := range es {
			es[k] = audittest.Entry(i + k)
		}
		if err := b.Append(ctx, es); err != nil {
			t.Fatal(err)
		}
		if i%(perSeg*10) == 0 {
			audittest.WaitIntegrated(t, l) // checkpoints all along, not one at the end
		}
	}
	audittest.WaitIntegrated(t, l)
	readAll(t, l, n)
	cps, err := b.Checkpoints(ctx, 0, 0)
	if err != nil || len(cps) < segments/10 {
		t.Fatalf("%d checkpoints (%v): too few for the test to mean anything", len(cps), err)
	}
	bounded(t, b, "after appending")
	l.Close()
	b.Close()

	b, err = filelog.Open(filelog.Config{Dir: dir, SegmentEntries: perSeg})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	bounded(t, b, "after reopening")
	l = audittest.OpenLog(t, b, s)
	readAll(t, l, n)
	bounded(t, b, "after reading everything again")
}
