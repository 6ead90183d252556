package filelog_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/archive"
	"github.com/warden-run/warden/internal/audit/archive/archivetest"
	"github.com/warden-run/warden/internal/audit/audittest"
	"github.com/warden-run/warden/internal/audit/filelog"
)

func TestArchiveToDirectory(t *testing.T) {
	t.Parallel()
	st, err := archive.NewDir(filepath.Join(t.TempDir(), "archive"))
	if err != nil {
		t.Fatal(err)
	}
	testArchive(t, st, func(name string, b []byte) { os.WriteFile(filepath.Join(st.Path, name), b, 0o600) })
}

func TestArchiveToS3(t *testing.T) {
	t.Parallel()
	st, put := archivetest.S3(t)
	testArchive(t, st, put)
}

// testArchive: sealed segments under a signed checkpoint move to the
// archive and leave the data directory; every entry still reads the same,
// proofs still verify against the checkpoints, the whole log still
// verifies, after a restart too. A changed archived file is refused.
// tamper replaces a file in the archive.
func testArchive(t *testing.T, st archive.Store, tamper func(name string, b []byte)) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "audit")
	s := audittest.Signer(t)
	open := func(withArchive bool) (*filelog.Log, *audit.Log) {
		t.Helper()
		cfg := filelog.Config{Dir: dir, SegmentEntries: 100}
		if withArchive {
			cfg.Archive = st
		}
		b, err := filelog.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		l, err := audit.Open(audit.Config{CheckpointEvery: 50, CheckpointInterval: 10 * time.Millisecond}, b, s)
		if err != nil {
			t.Fatal(err)
		}
		return b, l
	}
	b, l := open(true)
	for i := range 1000 {
		if _, err := l.AppendDurable(ctx, audittest.Entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if cp, err := l.Checkpoint(ctx); err == nil && cp.Size == 1000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint of 1000")
		}
	}
	before, err := l.Read(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	local := func() int {
		names, _ := filepath.Glob(filepath.Join(dir, "seg-*.log"))
		return len(names)
	}
	if local() != 10 {
		t.Fatalf("%d local segments", local())
	}
	// Not yet old enough: nothing moves.
	if moved, err := b.Archive(ctx, time.Now().Add(-time.Hour), nil); err != nil || len(moved) != 0 {
		t.Fatalf("young segments archived: %v %v", moved, err)
	}
	moved, err := b.Archive(ctx, time.Now().Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Nine sealed segments moved; the newest, which takes appends, stays.
	if len(moved) != 9 || moved[0].First != 0 || moved[8].First != 800 || local() != 1 {
		t.Fatalf("moved %+v, %d local", moved, local())
	}
	after, err := l.Read(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for i := range before {
		if !bytes.Equal(before[i], after[i]) {
			t.Fatalf("entry %d reads differently from the archive", i)
		}
	}
	checkProofs(t, l, s, before)
	verify(t, dir, st, s, 1000)
	if _, err := filelog.ReadItems(dir); err == nil || !strings.Contains(err.Error(), "archived") {
		t.Fatalf("a log with archived segments read without its archive: %v", err)
	}

	// After a restart: the same, and appends go on.
	l.Close()
	b.Close()
	b, l = open(true)
	if n, _ := l.Size(ctx); n != 1000 {
		t.Fatalf("size after restart: %d", n)
	}
	if _, err := l.AppendDurable(ctx, audittest.Entry(1000)); err != nil {
		t.Fatal(err)
	}
	if got, err := l.Read(ctx, 5, 6); err != nil || !bytes.Equal(got[0], before[5]) {
		t.Fatalf("entry 5 after restart: %v", err)
	}
	l.Close()
	b.Close()

	// Without the archive configured, archived entries cannot be read, and
	// say why; the rest can.
	b, l = open(false)
	if _, err := l.Read(ctx, 0, 1); err == nil || !strings.Contains(err.Error(), "archived") {
		t.Fatalf("reading an archived entry without the archive: %v", err)
	}
	if _, err := l.Read(ctx, 950, 951); err != nil {
		t.Fatal(err)
	}
	l.Close()
	b.Close()

	// A segment put in the cache by someone who can write the data
	// directory is refused: the cache is checked, not trusted.
	{
		rc, err := st.Get(ctx, "seg-00000000000000000100.log")
		if err != nil {
			t.Fatal(err)
		}
		var orig bytes.Buffer
		orig.ReadFrom(rc)
		rc.Close()
		cache := filepath.Join(dir, "archive-cache")
		os.MkdirAll(cache, 0o700)
		rc, _ = st.Get(ctx, "seg-00000000000000000100.idx")
		var idx bytes.Buffer
		idx.ReadFrom(rc)
		rc.Close()
		os.WriteFile(filepath.Join(cache, "seg-00000000000000000100.log"), reframe(t, orig.Bytes(), 3), 0o600)
		os.WriteFile(filepath.Join(cache, "seg-00000000000000000100.idx"), idx.Bytes(), 0o600)
		b, l = open(true)
		if got, err := l.Read(ctx, 103, 104); err != nil || !bytes.Equal(got[0], before[103]) {
			t.Fatalf("a planted cached segment was read: %v", err)
		}
		l.Close()
		b.Close()
	}

	// A changed file in the archive is refused when fetched, and by verify.
	os.RemoveAll(filepath.Join(dir, "archive-cache"))
	seg := "seg-00000000000000000300.log"
	rc, err := st.Get(ctx, seg)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.ReadFrom(rc)
	rc.Close()
	// One entry changed, its record's checksum made to match: only the
	// digest recorded at archiving tells.
	changed := reframe(t, buf.Bytes(), 7)
	tamper(seg, changed)
	b, l = open(true)
	defer b.Close()
	defer l.Close()
	if _, err := l.Read(ctx, 350, 351); !errors.Is(err, filelog.ErrCorrupt) {
		t.Fatalf("a changed archived segment read: %v", err)
	}
	src, err := filelog.ReadItemsFrom(dir, st)
	if err != nil {
		t.Fatal(err)
	}
	cv, _ := audit.NewCheckpointVerifier(s.VerifierKey())
	if r, err := audit.Verify(src, cv, nil); err == nil || !strings.Contains(err.Error(), "not the file that was archived") {
		t.Fatalf("a changed archived segment: %+v %v", r, err)
	}
}

// reframe changes one byte of record k of a segment and recomputes that
// record's checksum.
func reframe(t *testing.T, seg []byte, k int) []byte {
	t.Helper()
	var out []byte
	for i := 0; len(seg) > 0; i++ {
		n := int(binary.BigEndian.Uint32(seg[:4]))
		data := bytes.Clone(seg[8 : 8+n])
		if i == k {
			data[len(data)/2] ^= 1
		}
		out = append(out, filelog.Record(data)...)
		seg = seg[8+n:]
	}
	return out
}

// archivedLog writes n entries under checkpoints into dir, archives what
// it can into st, and closes; it returns the signer.
func archivedLog(t *testing.T, dir string, st archive.Store, n int) *audit.CheckpointSigner {
	t.Helper()
	s := writeLog(t, dir, n)
	b, err := filelog.Open(filelog.Config{Dir: dir, SegmentEntries: 16, Archive: st})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if moved, err := b.Archive(context.Background(), time.Now().Add(time.Hour), nil); err != nil || len(moved) == 0 {
		t.Fatalf("archived %v %v", moved, err)
	}
	return s
}

// writeLog writes n entries under checkpoints into dir, in segments of
// 16, and closes it.
func writeLog(t *testing.T, dir string, n int) *audit.CheckpointSigner {
	t.Helper()
	ctx := context.Background()
	s := audittest.Signer(t)
	b, err := filelog.Open(filelog.Config{Dir: dir, SegmentEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(audit.Config{CheckpointEvery: 8, CheckpointInterval: time.Hour}, b, s)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := l.AppendDurable(ctx, audittest.Entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close() // integrates and signs
	b.Close()
	return s
}

// An archive never replaces a file: a second log archiving into the same
// place is refused, and the first log's evidence stays as it was.
func TestArchiveNeverOverwrites(t *testing.T) {
	t.Parallel()
	st, err := archive.NewDir(filepath.Join(t.TempDir(), "archive"))
	if err != nil {
		t.Fatal(err)
	}
	archivedLog(t, filepath.Join(t.TempDir(), "a"), st, 50)
	before, _ := os.ReadFile(filepath.Join(st.Path, "seg-00000000000000000000.log"))
	dir := filepath.Join(t.TempDir(), "b")
	b, err := filelog.Open(filelog.Config{Dir: dir, SegmentEntries: 16, Archive: st})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	l, err := audit.Open(audit.Config{CheckpointEvery: 8, CheckpointInterval: time.Hour}, b, audittest.Signer(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 50 {
		e := audittest.Entry(i)
		e.Action = "another-log"
		if _, err := l.AppendDurable(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	if _, err := b.Archive(ctx, time.Now().Add(time.Hour), nil); err == nil || !strings.Contains(err.Error(), "already holds a different") {
		t.Fatalf("archiving over another log's segment: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(st.Path, "seg-00000000000000000000.log")); !bytes.Equal(before, after) {
		t.Fatal("the first log's archived segment was replaced")
	}
	if _, err := os.Stat(filepath.Join(dir, "seg-00000000000000000000.log")); err != nil {
		t.Fatal("the refused segment left the data directory")
	}
}

// A move is noted (in the log itself, by the server) before anything
// here changes; a note that fails stops it.
func TestArchiveNotesFirst(t *testing.T) {
	t.Parallel()
	st, err := archive.NewDir(filepath.Join(t.TempDir(), "archive"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "audit")
	writeLog(t, dir, 50)
	b, err := filelog.Open(filelog.Config{Dir: dir, SegmentEntries: 16, Archive: st})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	noted := 0
	if _, err := b.Archive(ctx, time.Now().Add(time.Hour), func(filelog.ArchivedSegment) error { noted++; return errors.New("the log is full") }); err == nil || noted != 1 {
		t.Fatalf("a failed note: %v, %d notes", err, noted)
	}
	if n := len(b.Archived()); n != 0 {
		t.Fatalf("a move whose note failed went ahead: %d archived", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "seg-00000000000000000000.log")); err != nil {
		t.Fatal("the segment left though its move was not noted")
	}
	moved, err := b.Archive(ctx, time.Now().Add(time.Hour), func(filelog.ArchivedSegment) error { noted++; return nil })
	if err != nil || len(moved) == 0 || noted != 1+len(moved) {
		t.Fatalf("moved %d with %d notes: %v", len(moved), noted, err)
	}
}

// An archived.log that names a local segment with another digest does not
// make the log delete it: the log refuses to open.
func TestForgedManifestDeletesNothing(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "audit")
	b, err := filelog.Open(filelog.Config{Dir: dir, SegmentEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 40 {
		e := audittest.Entry(i)
		e.Index = int64(i)
		if err := b.Append(ctx, []*audit.Entry{e}); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	forged := filelog.Record([]byte(`{"first":0,"count":16,"log_sha256":"00","idx_sha256":"00","log_bytes":1,"idx_bytes":1}`))
	os.WriteFile(filepath.Join(dir, "archived.log"), forged, 0o600)
	if _, err := filelog.Open(filelog.Config{Dir: dir, SegmentEntries: 16}); !errors.Is(err, filelog.ErrCorrupt) {
		t.Fatalf("opened with a forged archived.log: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "seg-00000000000000000000.log")); err != nil {
		t.Fatal("the forged record made the log delete a segment")
	}
}

// Segments that no signed checkpoint covers stay, however old.
func TestArchiveWaitsForACheckpoint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := archive.NewDir(filepath.Join(t.TempDir(), "archive"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "audit")
	b, err := filelog.Open(filelog.Config{Dir: dir, SegmentEntries: 16, Archive: st})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := range 100 {
		e := audittest.Entry(i)
		e.Index = int64(i)
		if err := b.Append(ctx, []*audit.Entry{e}); err != nil {
			t.Fatal(err)
		}
	}
	if names, _ := filepath.Glob(filepath.Join(dir, "seg-*.log")); len(names) < 2 {
		t.Fatalf("%d segments", len(names))
	}
	if moved, err := b.Archive(ctx, time.Now().Add(time.Hour), nil); err != nil || len(moved) != 0 {
		t.Fatalf("archived without a checkpoint: %+v %v", moved, err)
	}
}

// checkProofs: an entry in an archived segment and one in the data
// directory are proved included in the latest checkpoint, and the first
// checkpoint is proved a prefix of it.
func checkProofs(t *testing.T, l *audit.Log, s *audit.CheckpointSigner, entries [][]byte) {
	t.Helper()
	ctx := context.Background()
	cv, _ := audit.NewCheckpointVerifier(s.VerifierKey())
	stored, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := cv.Parse(stored.Signed)
	if err != nil {
		t.Fatal(err)
	}
	h := rfc6962.DefaultHasher
	for _, i := range []int64{3, 420, 999} {
		hashes, _, err := l.InclusionProof(ctx, i, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := proof.VerifyInclusion(h, uint64(i), uint64(cp.Size), h.HashLeaf(entries[i]), hashes, cp.Root); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	cps, err := l.Checkpoints(ctx, 0, 1)
	if err != nil || len(cps) != 1 {
		t.Fatal(err)
	}
	first, err := cv.Parse(cps[0].Signed)
	if err != nil {
		t.Fatal(err)
	}
	hashes, err := l.ConsistencyProof(ctx, first.Size, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := proof.VerifyConsistency(h, uint64(first.Size), uint64(cp.Size), hashes, first.Root, cp.Root); err != nil {
		t.Fatal(err)
	}
}

// verify checks the whole log, archived segments included, as
// `warden audit verify --dir --archive` does.
func verify(t *testing.T, dir string, st archive.Store, s *audit.CheckpointSigner, want int64) {
	t.Helper()
	src, err := filelog.ReadItemsFrom(dir, st)
	if err != nil {
		t.Fatal(err)
	}
	cv, _ := audit.NewCheckpointVerifier(s.VerifierKey())
	r, err := audit.Verify(src, cv, nil)
	if err != nil || !r.OK() || r.Entries != want {
		t.Fatalf("verify: %+v %v", r, err)
	}
}

// Someone who can write the data directory, but has not the signing key,
// changes an entry (its checksum made to match) and removes the tree's
// files, so that the tree is rebuilt from the changed entries: the log
// does not sign over it, because it no longer extends its own checkpoint.
func TestRebuiltTreeIsNotSignedOver(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "audit")
	s := writeLog(t, dir, 40)
	seg := filepath.Join(dir, "seg-00000000000000000000.log")
	b, _ := os.ReadFile(seg)
	os.WriteFile(seg, reframe(t, b, 5), 0o600)
	for _, pattern := range []string{"tree-*.bin", "tree.state"} {
		names, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, n := range names {
			os.Remove(n)
		}
	}
	be, err := filelog.Open(filelog.Config{Dir: dir, SegmentEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	l, err := audit.Open(audit.Config{CheckpointEvery: 1, CheckpointInterval: time.Millisecond}, be, s)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := l.AppendDurable(ctx, audittest.Entry(40)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	cp, err := be.LatestCheckpoint(ctx)
	if err != nil || cp.Size != 40 {
		t.Fatalf("a checkpoint of %d entries was signed over the changed log (%v)", cp.Size, err)
	}
}
