package postgres_test

import (
	"context"
	"testing"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/audittest"
	"github.com/warden-run/warden/internal/store/postgres"
)

// BenchmarkAuditAppend measures durable appends (returned once committed)
// from 16 concurrent writers on one replica.
func BenchmarkAuditAppend(b *testing.B) {
	s := open(b).(*postgres.Store)
	l, err := audit.Open(audit.Config{}, s.AuditLog(), audittest.Signer(b))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	b.SetParallelism(8) // x GOMAXPROCS(2) = 16 writers
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
