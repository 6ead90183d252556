package postgres_test

import (
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
	audittest.BenchAppend(b, l)
}
