package filelog_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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
			cps = append(cps, filelog.CheckpointRecord(audit.StoredCheckpoint{Size: audittest.NoteSize(t, it.Data), Signed: it.Data})...)
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

// writeCheckpointed appends n entries through a Log, waits until a
// checkpoint covers them all, and closes everything; it returns the one
// segment file.
func writeCheckpointed(t *testing.T, dir string, n int) string {
	t.Helper()
	b, err := filelog.Open(filelog.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(audit.Config{CheckpointEvery: 1, CheckpointInterval: 10 * time.Millisecond}, b, audittest.Signer(t))
	if err != nil {
		t.Fatal(err)
	}
	audittest.AppendN(t, l, n)
	audittest.WaitIntegrated(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "seg-00000000000000000000.log")
}

// A record torn by a crash is cut off on open, and its bytes are kept
// beside the segment.
func TestTornTailIsCutAndKept(t *testing.T) {
	dir := t.TempDir()
	seg := writeCheckpointed(t, dir, 20)
	whole, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	torn := filelog.Record([]byte(`{"v":1,"kind":"decision"}`))[:12] // header and a little data
	if err := os.WriteFile(seg, append(append([]byte(nil), whole...), torn...), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := filelog.Open(filelog.Config{Dir: dir})
	if err != nil {
		t.Fatalf("open after a torn append: %v", err)
	}
	defer b.Close()
	if n, _ := b.Size(context.Background()); n != 20 {
		t.Fatalf("size after cutting the torn record: %d, want 20", n)
	}
	after, _ := os.ReadFile(seg)
	if !bytes.Equal(after, whole) {
		t.Fatalf("segment is %d bytes after the cut, want the %d it had", len(after), len(whole))
	}
	kept, _ := filepath.Glob(seg + ".torn-*")
	if len(kept) != 1 {
		t.Fatalf("torn tail kept in %v, want one file", kept)
	}
	if b, _ := os.ReadFile(kept[0]); !bytes.Equal(b, torn) {
		t.Fatalf("kept tail is %q, want %q", b, torn)
	}
}

// A damaged last record that a checkpoint covers was acknowledged: open
// refuses, and leaves the file as it is.
func TestDamagedAcknowledgedTailIsNotCut(t *testing.T) {
	dir := t.TempDir()
	seg := writeCheckpointed(t, dir, 20)
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-3] ^= 0x40 // inside the last entry's JSON
	if err := os.WriteFile(seg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = filelog.Open(filelog.Config{Dir: dir})
	if !errors.Is(err, filelog.ErrCorrupt) || !strings.Contains(err.Error(), "entry 19") {
		t.Fatalf("open with a damaged acknowledged entry: %v, want ErrCorrupt naming entry 19", err)
	}
	after, _ := os.ReadFile(seg)
	if !bytes.Equal(after, data) {
		t.Fatal("open changed the segment although it refused")
	}
	if kept, _ := filepath.Glob(seg + ".torn-*"); len(kept) != 0 {
		t.Fatalf("refused open still wrote %v", kept)
	}
}

// A line of an export longer than any entry or checkpoint is a bad entry
// at its place, not a reason to give up verifying.
func TestExportLineTooLong(t *testing.T) {
	s := audittest.Signer(t)
	ref, trusted := audittest.BuildReference(t, factory(t)(t), s)
	cv, err := audit.NewCheckpointVerifier(s.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	items := slices.Clone(ref)
	n := 0
	for k := range items {
		if !items[k].Checkpoint {
			if n == 25 {
				items[k].Data = bytes.Repeat([]byte("x"), 2*audit.MaxEntrySize)
			}
			n++
		}
	}
	r, err := audit.Verify(audittest.AsExport(t, items), cv, trusted)
	if err != nil {
		t.Fatalf("verify gave up: %v", err)
	}
	if r.FirstBad != 25 || !strings.Contains(r.Problem, "not a well-formed entry") {
		t.Fatalf("first bad %d (%s), want 25, not a well-formed entry", r.FirstBad, r.Problem)
	}
}

// The newest segment is written with zeros ahead of its records, so that
// a sync does not have to grow the file. After a crash the zeros are not
// records and not damage: open stops at them and appends go on over them.
// A record torn inside them is cut off as a tear, and only its own bytes
// are kept. A clean close and a sealed segment end with their last record.
func TestPreallocatedSpace(t *testing.T) {
	dir := t.TempDir()
	b, err := filelog.Open(filelog.Config{Dir: dir, SegmentEntries: 8})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	appendN := func(b *filelog.Log, from, n int) {
		t.Helper()
		for i := range n {
			if err := b.Append(ctx, []*audit.Entry{audittest.Entry(from + i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendN(b, 0, 10) // one sealed segment of 8, and 2 in the newest
	sealed := filepath.Join(dir, "seg-00000000000000000000.log")
	newest := filepath.Join(dir, "seg-00000000000000000008.log")
	recordsOnly := func(path string) {
		t.Helper()
		data, _ := os.ReadFile(path)
		if len(data) == 0 || data[len(data)-1] == 0 {
			t.Fatalf("%s: %d bytes, ends with a zero", filepath.Base(path), len(data))
		}
	}
	recordsOnly(sealed)
	if st, _ := os.Stat(newest); st.Size() < 1<<20 {
		t.Fatalf("the newest segment has %d bytes, no space ahead", st.Size())
	}
	// A crash: a copy of the directory while the log is open.
	crashed := t.TempDir()
	for _, name := range []string{"seg-00000000000000000000.log", "seg-00000000000000000008.log"} {
		data, _ := os.ReadFile(filepath.Join(dir, name))
		os.WriteFile(filepath.Join(crashed, name), data, 0o600)
	}
	b.Close()
	recordsOnly(newest)
	c, err := filelog.Open(filelog.Config{Dir: crashed, SegmentEntries: 8})
	if err != nil {
		t.Fatalf("open after a crash: %v", err)
	}
	if n, _ := c.Size(ctx); n != 10 {
		t.Fatalf("%d entries after a crash, want 10", n)
	}
	appendN(c, 10, 3)
	if n, _ := c.Size(ctx); n != 13 {
		t.Fatalf("%d entries, want 13", n)
	}
	// Another crash, in the middle of writing a record over the zeros.
	seg := filepath.Join(crashed, "seg-00000000000000000008.log")
	data, _ := os.ReadFile(seg)
	d, _ := c.Read(ctx, 8, 13)
	end := 0
	for _, r := range d {
		end += len(filelog.Record(r))
	}
	torn := filelog.Record([]byte(`{"v":1,"kind":"decision"}`))[:12]
	copy(data[end:], torn)
	c.Close()
	os.WriteFile(seg, data, 0o600)
	c, err = filelog.Open(filelog.Config{Dir: crashed, SegmentEntries: 8})
	if err != nil {
		t.Fatalf("open after a torn record over zeros: %v", err)
	}
	defer c.Close()
	if n, _ := c.Size(ctx); n != 13 {
		t.Fatalf("%d entries after the tear, want 13", n)
	}
	kept, _ := filepath.Glob(seg + ".torn-*")
	if len(kept) != 1 {
		t.Fatalf("torn tail kept in %v, want one file", kept)
	}
	if b, _ := os.ReadFile(kept[0]); !bytes.Equal(b, torn) {
		t.Fatalf("kept tail is %q, want %q", b, torn)
	}
	appendN(c, 13, 1)
	if got, err := c.Read(ctx, 0, 14); err != nil || len(got) != 14 {
		t.Fatalf("read %d entries: %v", len(got), err)
	}
}
