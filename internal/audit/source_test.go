package audit_test

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/audittest"
	"github.com/warden-run/warden/internal/audit/filelog"
)

// TestReadBackendPagesCheckpoints reads a log whose checkpoints take many
// pages, with runs of one size longer than a page (replicas handing over
// the lead can sign one size twice): every checkpoint comes once, after
// the entries it covers, as when they are read all at once.
func TestReadBackendPagesCheckpoints(t *testing.T) {
	const entries = 20
	b, err := filelog.Open(filelog.Config{Dir: filepath.Join(t.TempDir(), "audit"), SegmentEntries: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	s := audittest.Signer(t)
	tree := (&compact.RangeFactory{Hash: audit.NodeHash}).NewEmptyRange(0)
	signed := 0
	for i := range entries {
		if err := b.Append(ctx, []*audit.Entry{audittest.Entry(i)}); err != nil {
			t.Fatal(err)
		}
		leaf, err := b.LeafHashes(ctx, int64(i), int64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if err := tree.Append(leaf[0], nil); err != nil {
			t.Fatal(err)
		}
		root, err := tree.GetRootHash(nil)
		if err != nil {
			t.Fatal(err)
		}
		copies := 1
		switch i + 1 {
		case 10:
			copies = 15
		case entries:
			copies = 3
		}
		for range copies {
			note, err := s.Sign(int64(i+1), root)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.AddCheckpoint(ctx, audit.StoredCheckpoint{Size: int64(i + 1), Signed: note, Time: time.Now()}); err != nil {
				t.Fatal(err)
			}
			signed++
		}
	}
	read := func(page int) []audit.Item {
		t.Helper()
		defer audit.SetCheckpointPage(page)()
		src, err := audit.ReadBackend(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		var items []audit.Item
		for {
			it, err := src.Next()
			if err == io.EOF {
				return items
			}
			if err != nil {
				t.Fatal(err)
			}
			items = append(items, it)
		}
	}
	whole := read(1000)
	if len(whole) != entries+signed {
		t.Fatalf("%d items read at once, want %d entries and %d checkpoints", len(whole), entries, signed)
	}
	for _, page := range []int{1, 4, 7} {
		got := read(page)
		if len(got) != len(whole) {
			t.Fatalf("pages of %d: %d items, want %d", page, len(got), len(whole))
		}
		for i := range got {
			if got[i].Checkpoint != whole[i].Checkpoint || !bytes.Equal(got[i].Data, whole[i].Data) {
				t.Fatalf("pages of %d: item %d differs", page, i)
			}
		}
	}
	cv, _ := audit.NewCheckpointVerifier(s.VerifierKey())
	defer audit.SetCheckpointPage(4)()
	src, err := audit.ReadBackend(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	r, err := audit.Verify(src, cv, nil)
	if err != nil || !r.OK() || r.Entries != entries || r.Checkpoints != signed {
		t.Fatalf("verify: %+v %v, want %d entries and %d checkpoints", r, err, entries, signed)
	}
}
