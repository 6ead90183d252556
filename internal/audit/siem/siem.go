// Package siem streams the audit log to security information and event
// management systems: syslog (RFC 5424, over TCP or TLS, JSON or CEF),
// OCSF over HTTP, Splunk's HTTP Event Collector, and signed webhooks. Each
// exporter keeps a durable cursor in the log's backend: delivery is at
// least once, resumes after a restart, retries with backoff, and never
// stands in the way of an append.
package siem

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/warden-run/warden/internal/audit"
)

// Exporter delivers batches of entries to one destination.
type Exporter interface {
	// Send delivers the batch, all of it, or returns an error; a batch may
	// be sent again after an error, so receivers must accept repeats
	// (entries carry their index).
	Send(ctx context.Context, batch []audit.Stored) error
	Close() error
}

// Config configures a Runner.
type Config struct {
	// Name identifies the exporter and its cursor.
	Name string
	// Batch caps entries per Send. Default 500.
	Batch int
	// Poll is how often to look for new entries when caught up. Default 200ms.
	Poll time.Duration
	// MinBackoff and MaxBackoff bound the waits between failed sends.
	// Defaults 500ms and 1 minute.
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
}

// Runner moves entries from the log to one exporter.
type Runner struct {
	cfg Config
	log *audit.Log
	exp Exporter
	lg  *slog.Logger
}

// NewRunner makes a runner for exp over l.
func NewRunner(cfg Config, l *audit.Log, exp Exporter) (*Runner, error) {
	if cfg.Name == "" {
		return nil, errors.New("siem: an exporter needs a name")
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 500
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 200 * time.Millisecond
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = time.Minute
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &Runner{cfg: cfg, log: l, exp: exp, lg: lg.With("exporter", cfg.Name)}, nil
}

func (r *Runner) cursor() string { return "siem-" + r.cfg.Name }

// Run delivers entries until ctx ends. Only the replica holding the log's
// lead exports, so replicas do not send the same entries side by side.
func (r *Runner) Run(ctx context.Context) {
	defer r.exp.Close()
	backoff := r.cfg.MinBackoff
	for {
		wait := r.cfg.Poll
		n, err := r.step(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			r.lg.Warn("siem: delivery failed; retrying", "err", err, "retry_in", backoff)
			wait, backoff = backoff, min(backoff*2, r.cfg.MaxBackoff)
		case n > 0:
			wait, backoff = 0, r.cfg.MinBackoff
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// step sends the next batch, if any, and moves the cursor past it.
func (r *Runner) step(ctx context.Context) (int, error) {
	if !r.log.Leading() {
		return 0, nil
	}
	be := r.log.Backend()
	next, err := be.Cursor(ctx, r.cursor())
	if err != nil {
		return 0, err
	}
	size, err := r.log.Size(ctx)
	if err != nil || size <= next {
		return 0, err
	}
	to := min(size, next+int64(r.cfg.Batch))
	data, err := r.log.Read(ctx, next, to)
	if err != nil {
		return 0, err
	}
	batch := make([]audit.Stored, 0, len(data))
	for i, d := range data {
		e, err := audit.DecodeEntry(d)
		if err != nil {
			return 0, fmt.Errorf("entry %d: %w", next+int64(i), err)
		}
		batch = append(batch, audit.Stored{Entry: e, Data: d})
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = r.exp.Send(sctx, batch)
	cancel()
	if err != nil {
		return 0, err
	}
	// Delivered: record it even if the runner is being stopped, so that
	// a restart does not send the batch again.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := be.SetCursor(cctx, r.cursor(), to); err != nil {
		return 0, err
	}
	return len(batch), nil
}
