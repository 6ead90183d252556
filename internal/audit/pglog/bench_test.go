package pglog_test

import (
	"testing"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/audittest"
)

// BenchmarkAppend measures durable appends (returned once committed) from
// 16 concurrent writers on one replica.
func BenchmarkAppend(b *testing.B) {
	l, err := audit.Open(audit.Config{}, open(b).backend(b), audittest.Signer(b))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	audittest.BenchAppend(b, l)
}
