package filelog_test

import (
	"os"
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

// materialize writes items as a log directory, the way an attacker with
// the files (but not the checkpoint key) could: whole, checksummed records.
func materialize(t *testing.T, items []audit.Item) audit.Source {
	dir := t.TempDir()
	var segs, cps []byte
	for _, it := range items {
		if it.Checkpoint {
			text, _ := audit.SplitNote(it.Data)
			c, err := audit.ParseCheckpointBody(text)
			if err != nil {
				t.Fatal(err)
			}
			cps = append(cps, filelog.CheckpointRecord(audit.StoredCheckpoint{Size: c.Size, Signed: it.Data})...)
		} else {
			segs = append(segs, filelog.Record(it.Data)...)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "seg-00000000000000000000.log"), segs, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "checkpoints.log"), cps, 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := filelog.ReadItems(dir)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func TestTamperingIsDetected(t *testing.T) {
	s := audittest.Signer(t)
	ref, trusted := audittest.BuildReference(t, factory(t)(t), s)
	t.Run("log directory", func(t *testing.T) { audittest.RunTamper(t, ref, trusted, s, materialize) })
	t.Run("exported JSON lines", func(t *testing.T) { audittest.RunTamper(t, ref, trusted, s, audittest.AsExport) })
}
