package identity

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"
)

// sampledLog logs refusals without letting a flood of them write a line
// each: in every interval the first few are logged in full, the others are
// counted by reason, and the count comes in one line with the next refusal
// after the interval (the exact totals are in the verifier's Stats).
type sampledLog struct {
	log   *slog.Logger
	msg   string
	every time.Duration
	first int // refusals logged in full per interval

	mu      sync.Mutex
	start   time.Time
	logged  int
	skipped map[string]int // reason -> refusals not logged
}

func newSampledLog(log *slog.Logger, msg string, every time.Duration, first int) *sampledLog {
	return &sampledLog{log: log, msg: msg, every: every, first: first, skipped: map[string]int{}}
}

// Log logs one refusal for reason at level, or counts it.
func (s *sampledLog) Log(now time.Time, level slog.Level, reason string, attrs ...any) {
	s.mu.Lock()
	var summary []any
	if now.Sub(s.start) >= s.every {
		summary = s.takeLocked(now)
		s.start, s.logged = now, 0
	}
	full := s.logged < s.first
	if full {
		s.logged++
	} else {
		s.skipped[reason]++
	}
	s.mu.Unlock()
	// Written after the lock is let go: a slow log holds no other refusal.
	if summary != nil {
		s.log.Warn(s.msg+" (not logged one by one)", summary...)
	}
	if full {
		s.log.Log(context.Background(), level, s.msg, append([]any{"reason", reason}, attrs...)...)
	}
}

// takeLocked returns the summary of the refusals counted since s.start
// (nil when there were none), and forgets them.
func (s *sampledLog) takeLocked(now time.Time) []any {
	if len(s.skipped) == 0 {
		return nil
	}
	n := 0
	attrs := []any{}
	for _, r := range slices.Sorted(maps.Keys(s.skipped)) {
		n += s.skipped[r]
		attrs = append(attrs, slog.Int(r, s.skipped[r]))
	}
	clear(s.skipped)
	return []any{"count", n, "since", s.start.UTC().Format(time.RFC3339), "until", now.UTC().Format(time.RFC3339), slog.Group("by_reason", attrs...)}
}
