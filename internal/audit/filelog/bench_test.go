package filelog_test

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/audittest"
	"github.com/warden-run/warden/internal/audit/filelog"
)

// BenchmarkAppend measures durable appends (returned only once synced)
// from 16 concurrent writers.
func BenchmarkAppend(b *testing.B) {
	b2, err := filelog.Open(filelog.Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer b2.Close()
	// The default checkpoint schedule: every 1,000 entries or second.
	l, err := audit.Open(audit.Config{}, b2, audittest.Signer(b))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	audittest.BenchAppend(b, l)
}

// millionLog builds a log of n entries in dir quickly (batches of 1,024,
// one sync each) and closes it with a checkpoint over everything.
func millionLog(b *testing.B, n int) (string, *audit.CheckpointSigner) {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "audit")
	be, err := filelog.Open(filelog.Config{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	s := audittest.Signer(b)
	l, err := audit.Open(audit.Config{CheckpointEvery: 100_000, CheckpointInterval: time.Hour}, be, s)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	batch := make([]*audit.Entry, 0, 1024)
	flush := func() {
		// Straight to the backend: building the fixture is not what is measured.
		if err := be.Append(ctx, batch); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
	}
	for i := range n {
		e := audittest.Entry(i)
		e.Input = []byte(`{"agent":{"id":"ai-agent://prod/finance/trading-optimizer","roles":["trader"]},"action":"tools/call","args":{"symbol":"ACME","qty":100}}`)
		batch = append(batch, e)
		if len(batch) == cap(batch) {
			flush()
		}
	}
	if len(batch) > 0 {
		flush()
	}
	l.Close() // integrates everything and signs the checkpoint
	be.Close()
	return dir, s
}

// BenchmarkVerifyMillion verifies a log of 1,000,000 entries read from its
// directory: every entry parsed, chained and hashed, every checkpoint checked.
func BenchmarkVerifyMillion(b *testing.B) {
	dir, s := millionLog(b, 1_000_000)
	cv, _ := audit.NewCheckpointVerifier(s.VerifierKey())
	b.ResetTimer()
	for b.Loop() {
		src, err := filelog.ReadItems(dir)
		if err != nil {
			b.Fatal(err)
		}
		r, err := audit.Verify(src, cv, nil)
		if err != nil || !r.OK() || r.Entries != 1_000_000 {
			b.Fatalf("%+v %v", r, err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/verify")
}

// BenchmarkInclusionProof makes inclusion proofs from the stored tree of a
// 1,000,000-entry log, for random entries against the full size.
func BenchmarkInclusionProof(b *testing.B) {
	dir, s := millionLog(b, 1_000_000)
	be, err := filelog.Open(filelog.Config{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	l, err := audit.Open(audit.Config{}, be, s)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int64(0)
		for pb.Next() {
			i = (i*7919 + 104729) % 1_000_000
			if _, _, err := l.InclusionProof(ctx, i, 1_000_000); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "proofs/s")
}

// BenchmarkHeapPerEntry appends b.N decision-sized entries through a Log
// (the writer, the tree's integration and checkpoints every 1,000 entries,
// as a server runs them) and reports how much the live heap grew per entry
// between the first fifth of the run and its end: what the log keeps in
// memory per entry. Run it with a fixed count, such as -benchtime 2000000x.
func BenchmarkHeapPerEntry(b *testing.B) {
	if b.N < 10_000 {
		return // the probe run before the measured one, or a count too small to tell
	}
	be, err := filelog.Open(filelog.Config{Dir: filepath.Join(b.TempDir(), "audit")})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	l, err := audit.Open(audit.Config{Mode: audit.ModeAsync, AsyncBuffer: 8192}, be, audittest.Signer(b))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	input := []byte(`{"agent":{"id":"ai-agent://prod/finance/trading-optimizer","roles":["trader"]},"action":"tools/call","args":{"symbol":"SYM-0000000"}}`)
	appendRange := func(from, to int) {
		var wg sync.WaitGroup
		const writers = 4
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := from + w; i < to; i += writers {
					e := audittest.Entry(i)
					e.Kind, e.Input = audit.KindDecision, input
					for {
						_, err := l.Append(ctx, e)
						if err == nil {
							break
						}
						if !errors.Is(err, audit.ErrBufferFull) {
							b.Error(err)
							return
						}
						time.Sleep(100 * time.Microsecond)
					}
				}
			}()
		}
		wg.Wait()
		audittest.WaitIntegrated(b, l)
	}
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	warm := b.N / 5
	b.ResetTimer()
	appendRange(0, warm)
	h0 := heap()
	appendRange(warm, b.N)
	h1 := heap()
	b.ReportMetric((float64(h1)-float64(h0))/float64(b.N-warm), "heap-B/entry")
	b.ReportMetric(float64(h1)/1e6, "heap-MB")
}
