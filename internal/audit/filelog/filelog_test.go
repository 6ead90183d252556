package filelog_test

import (
	"path/filepath"
	"testing"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/audittest"
	"github.com/warden-run/warden/internal/audit/filelog"
)

// factory makes a log in a fresh directory; small segments exercise the
// segment changes.
func factory(t *testing.T) func(t *testing.T) audit.Backend {
	dir := filepath.Join(t.TempDir(), "audit")
	return func(t *testing.T) audit.Backend {
		b, err := filelog.Open(filelog.Config{Dir: dir, SegmentEntries: 16})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
}

func TestConformance(t *testing.T) { audittest.Run(t, factory) }
