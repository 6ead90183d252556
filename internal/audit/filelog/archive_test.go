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
	if moved, err := b.Archive(ctx, time.Now().Add(-time.Hour)); err != nil || len(moved) != 0 {
		t.Fatalf("young segments archived: %v %v", moved, err)
	}
	moved, err := b.Archive(ctx, time.Now().Add(time.Hour))
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
	if r, err := audit.Verify(src, cv, nil); err == nil && r.OK() {
		t.Fatalf("a changed archived segment verified: %+v", r)
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
	if moved, err := b.Archive(ctx, time.Now().Add(time.Hour)); err != nil || len(moved) != 0 {
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
