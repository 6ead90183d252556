package identity

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// The first refusals of an interval are logged one by one, the rest
// counted by reason and summarised in one line at the next refusal after
// the interval.
func TestSampledLog(t *testing.T) {
	var buf bytes.Buffer
	s := newSampledLog(slog.New(slog.NewTextHandler(&buf, nil)), "refused", 10*time.Second, 2)
	t0 := time.Unix(1_000_000, 0)
	for i := range 5 {
		s.Log(t0.Add(time.Duration(i)*time.Second), slog.LevelWarn, []string{"replayed", "expired"}[i%2])
	}
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Fatalf("%d lines within the interval:\n%s", n, buf.String())
	}
	s.Log(t0.Add(11*time.Second), slog.LevelWarn, "replayed")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 || !strings.Contains(lines[2], "count=3") || !strings.Contains(lines[2], "by_reason.expired=1") ||
		!strings.Contains(lines[2], "by_reason.replayed=2") || !strings.Contains(lines[3], "reason=replayed") {
		t.Fatalf("after the interval:\n%s", buf.String())
	}
}
