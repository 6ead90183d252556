package mcpgw

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// A command's standard error is logged a line at a time, however the
// writes split it, and long lines are cut.
func TestLineLogger(t *testing.T) {
	var out bytes.Buffer
	l := &lineLogger{lg: slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	for _, w := range []string{"ab", "c\nde", "\n", strings.Repeat("x", 600)} {
		if n, err := l.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("Write %q: %d %v", w, n, err)
		}
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "line=abc") || !strings.Contains(lines[1], "line=de") ||
		!strings.Contains(lines[2], strings.Repeat("x", maxLogLine)+"...") {
		t.Fatalf("logged:\n%s", out.String())
	}
}
