package pglog_test

import (
	"context"
	"testing"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/audittest"
	"github.com/warden-run/warden/internal/audit/pglog"
)

// BenchmarkAppend measures durable appends (returned once committed) from
// 16 concurrent writers on one replica: as is, and with every append
// announced on the store's change feed (as Warden runs it).
func BenchmarkAppend(b *testing.B) {
	for _, announced := range []bool{false, true} {
		name := "plain"
		if announced {
			name = "announced"
		}
		b.Run(name, func(b *testing.B) {
			db := open(b)
			cfg := pglog.Config{Schema: db.schema}
			if announced {
				cfg.Notify, cfg.NotifyPayload = db.store.Channel(), `{"kind":"audit"}`
			}
			be, err := pglog.Open(context.Background(), cfg, db.store.Pool())
			if err != nil {
				b.Fatal(err)
			}
			l, err := audit.Open(audit.Config{}, be, audittest.Signer(b))
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			audittest.BenchAppend(b, l)
		})
	}
}
