package filelog_test

import (
	"context"
	"testing"

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
	ctx := context.Background()
	b.SetParallelism(8) // 8 x GOMAXPROCS(2) = 16 writers
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, err := l.Append(ctx, audittest.Entry(i)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}
