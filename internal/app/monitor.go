package app

import (
	"context"
	"log/slog"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/monitor"
	"github.com/warden-run/warden/internal/store"
)

// startMonitor starts the behavioural monitor over the audit log: every
// replica follows the log (on PostgreSQL, every replica's decisions), and
// the one leading the log keeps the model's snapshot in the store.
func startMonitor(ctx context.Context, spawn func(func()), cfg config.Monitor, l *audit.Log, st store.MetaStore, onFire func(monitor.Alert), log *slog.Logger) (*monitor.Monitor, error) {
	m, err := monitor.New(monitor.Options{Model: cfg.Model, StaleAfter: cfg.StaleAfter, Snapshots: st, Persist: l.Leading,
		OnFire: onFire, Logger: log}, l)
	if err != nil {
		return nil, err
	}
	l.Watch(m.Wake())
	if err := m.Start(ctx); err != nil {
		return nil, err
	}
	// Other replicas' appends are announced (on PostgreSQL): the monitor
	// reads them at once, not at its next poll.
	if a, ok := st.(interface{ AuditAppended() <-chan struct{} }); ok {
		spawn(func() {
			wake := m.Wake()
			for {
				select {
				case <-ctx.Done():
					return
				case <-a.AuditAppended():
					select {
					case wake <- struct{}{}:
					default:
					}
				}
			}
		})
	}
	return m, nil
}
