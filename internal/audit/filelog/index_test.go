package filelog_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/audittest"
	"github.com/warden-run/warden/internal/audit/filelog"
)

// indexedLog writes a closed log of n entries in segments of 8, with
// checkpoints along the way, and returns its directory, its entries and
// its checkpoints as stored.
func indexedLog(t *testing.T, n int) (string, [][]byte, []audit.StoredCheckpoint) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "audit")
	b, err := filelog.Open(filelog.Config{Dir: dir, SegmentEntries: 8})
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(audit.Config{CheckpointEvery: 1, CheckpointInterval: time.Millisecond}, b, audittest.Signer(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < n; i += 3 {
		es := []*audit.Entry{audittest.Entry(i), audittest.Entry(i + 1), audittest.Entry(i + 2)}
		if err := b.Append(ctx, es[:min(3, n-i)]); err != nil {
			t.Fatal(err)
		}
		audittest.WaitIntegrated(t, l)
	}
	l.Close()
	data, err := b.Read(ctx, 0, int64(n))
	if err != nil {
		t.Fatal(err)
	}
	cps, err := b.Checkpoints(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	return dir, data, cps
}

// TestSealedSegmentIndex: a sealed segment is found through its index. A
// missing or mismatched index is rebuilt from the segment; one that is
// wrong inside, or a damaged record under a good index, is an error when
// the entry is read, never another entry's bytes.
func TestSealedSegmentIndex(t *testing.T) {
	t.Parallel()
	const seg0 = "seg-00000000000000000000"
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
		// bad are the entries that cannot be read.
		bad []int64
		// refuse: open fails, naming this text.
		refuse string
	}{
		{name: "missing index is rebuilt", damage: func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, seg0+".idx"))
		}},
		{name: "a crash while the index was written: it is written again", damage: func(t *testing.T, dir string) {
			os.Rename(filepath.Join(dir, seg0+".idx"), filepath.Join(dir, seg0+".idx.tmp12345"))
			truncateBy(t, filepath.Join(dir, seg0+".idx.tmp12345"), 3)
		}},
		{name: "index of the wrong length is rebuilt", damage: func(t *testing.T, dir string) {
			truncateBy(t, filepath.Join(dir, seg0+".idx"), 8)
		}},
		{name: "index not ending where the segment ends is rebuilt", damage: func(t *testing.T, dir string) {
			editIndex(t, filepath.Join(dir, seg0+".idx"), func(offs []uint64) { offs[len(offs)-1]-- })
		}},
		{name: "index wrong inside: the entries it misplaces cannot be read", damage: func(t *testing.T, dir string) {
			editIndex(t, filepath.Join(dir, seg0+".idx"), func(offs []uint64) { offs[3], offs[4] = offs[4], offs[3] })
		}, bad: []int64{2, 3, 4}},
		{name: "damaged record under a good index cannot be read", damage: func(t *testing.T, dir string) {
			flipInRecord(t, filepath.Join(dir, seg0+".log"), 3)
		}, bad: []int64{3}},
		{name: "damaged record in a sealed segment without an index refuses to open", damage: func(t *testing.T, dir string) {
			flipInRecord(t, filepath.Join(dir, seg0+".log"), 3)
			os.Remove(filepath.Join(dir, seg0+".idx"))
		}, refuse: "entry 3 in sealed segment"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir, want, _ := indexedLog(t, 30)
			tc.damage(t, dir)
			b, err := filelog.Open(filelog.Config{Dir: dir, SegmentEntries: 8})
			if tc.refuse != "" {
				if !errors.Is(err, filelog.ErrCorrupt) || !bytes.Contains([]byte(err.Error()), []byte(tc.refuse)) {
					t.Fatalf("open: %v, want ErrCorrupt naming %q", err, tc.refuse)
				}
				return
			}
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer b.Close()
			if n, _ := b.Size(context.Background()); n != 30 {
				t.Fatalf("%d entries, want 30", n)
			}
			for i := range int64(30) {
				got, err := b.Read(context.Background(), i, i+1)
				switch {
				case slices.Contains(tc.bad, i):
					if !errors.Is(err, filelog.ErrCorrupt) {
						t.Fatalf("entry %d: %v, want ErrCorrupt", i, err)
					}
				case err != nil:
					t.Fatalf("entry %d: %v", i, err)
				case !bytes.Equal(got[0], want[i]):
					t.Fatalf("entry %d is not what was written", i)
				}
			}
			if len(tc.bad) == 0 {
				if _, err := os.Stat(filepath.Join(dir, seg0+".idx")); err != nil {
					t.Fatalf("the index was not written again: %v", err)
				}
			}
			if tmp, _ := filepath.Glob(filepath.Join(dir, "*.tmp*")); len(tmp) != 0 {
				t.Fatalf("left behind: %v", tmp)
			}
		})
	}
}

// TestCheckpointIndex: checkpoints are found through checkpoints.idx. An
// index a crash left short or torn is completed from checkpoints.log, one
// missing or wrong is rebuilt, and a range of checkpoints read through it
// is the range the log holds.
func TestCheckpointIndex(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		damage func(t *testing.T, idx string)
	}{
		{"untouched", func(*testing.T, string) {}},
		{"missing", func(t *testing.T, idx string) { os.Remove(idx) }},
		{"the last entry was never written", func(t *testing.T, idx string) { truncateBy(t, idx, 16) }},
		{"the last entry is torn", func(t *testing.T, idx string) { truncateBy(t, idx, 5) }},
		{"the last entry points elsewhere", func(t *testing.T, idx string) {
			b, _ := os.ReadFile(idx)
			binary.BigEndian.PutUint64(b[len(b)-8:], 3)
			os.WriteFile(idx, b, 0o600)
		}},
		{"empty", func(t *testing.T, idx string) { os.WriteFile(idx, nil, 0o600) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir, _, want := indexedLog(t, 40)
			if len(want) < 10 {
				t.Fatalf("only %d checkpoints", len(want))
			}
			tc.damage(t, filepath.Join(dir, "checkpoints.idx"))
			b, err := filelog.Open(filelog.Config{Dir: dir, SegmentEntries: 8})
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer b.Close()
			ctx := context.Background()
			latest, err := b.LatestCheckpoint(ctx)
			if err != nil || latest.Size != want[len(want)-1].Size || !bytes.Equal(latest.Signed, want[len(want)-1].Signed) {
				t.Fatalf("latest: %d %v, want %d", latest.Size, err, want[len(want)-1].Size)
			}
			for _, q := range []struct {
				from  int64
				limit int
			}{{0, 0}, {0, 3}, {want[4].Size, 0}, {want[4].Size + 1, 2}, {want[len(want)-1].Size, 0}, {want[len(want)-1].Size + 1, 0}} {
				got, err := b.Checkpoints(ctx, q.from, q.limit)
				if err != nil {
					t.Fatal(err)
				}
				var exp []audit.StoredCheckpoint
				for _, c := range want {
					if c.Size >= q.from && (q.limit == 0 || len(exp) < q.limit) {
						exp = append(exp, c)
					}
				}
				if !slices.EqualFunc(got, exp, func(a, b audit.StoredCheckpoint) bool {
					return a.Size == b.Size && a.Time.Equal(b.Time) && bytes.Equal(a.Signed, b.Signed)
				}) {
					t.Fatalf("Checkpoints(%d, %d): %d checkpoints, want %d", q.from, q.limit, len(got), len(exp))
				}
			}
		})
	}
}

func truncateBy(t *testing.T, name string, n int64) {
	t.Helper()
	st, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(name, st.Size()-n); err != nil {
		t.Fatal(err)
	}
}

func editIndex(t *testing.T, name string, edit func([]uint64)) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	offs := make([]uint64, len(b)/8)
	for i := range offs {
		offs[i] = binary.BigEndian.Uint64(b[8*i:])
	}
	edit(offs)
	for i, o := range offs {
		binary.BigEndian.PutUint64(b[8*i:], o)
	}
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// flipInRecord changes a byte inside record i of a segment.
func flipInRecord(t *testing.T, name string, i int) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	off := 0
	for range i {
		off += 8 + int(binary.BigEndian.Uint32(b[off:]))
	}
	b[off+8+5] ^= 0x20
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
