// Package filelog is the audit log's embedded backend: append-only,
// checksummed segment files in the data directory, with the Merkle tree's
// nodes in one file per level and the signed checkpoints in a log of their own.
package filelog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/archive"
	"github.com/warden-run/warden/internal/durable"
)

// Config says where the log lives.
type Config struct {
	Dir string
	// SegmentEntries is how many entries one segment file holds. Default 65,536.
	SegmentEntries int64
	Logger         *slog.Logger
	// Archive, when set, is where Archive moves sealed segments, and where
	// reads of archived entries fetch them from.
	Archive archive.Store
}

// Log implements audit.Backend on files. What it keeps in memory does not
// grow with the log: the first index of each sealed segment (8 bytes per
// SegmentEntries entries), the newest segment's record offsets, a few open
// sealed segments, the latest checkpoint, and the leaf hashes of entries
// the tree has not yet integrated (bounded).
type Log struct {
	dir    string
	perSeg int64
	log    *slog.Logger
	lock   *os.File

	appendMu sync.Mutex // one Append at a time
	mu       sync.RWMutex
	sealed   []int64  // first index of every sealed segment, oldest first
	active   *segment // the newest segment, which takes appends; nil while there is none
	size     int64
	lastLeaf []byte
	broken   error
	// Leaf hashes of the newest entries, from leafBase on, so that the tree
	// grows without reading them back. Trimmed as the tree covers them.
	leafBase int64
	leaves   [][]byte
	files    sealedFiles

	treeMu       sync.RWMutex
	levels       []*os.File // tree-NN.bin, node i of level L at 32*i
	treeSize     int64
	treeSyncedAt time.Time
	loaded       bool // Open finished: Close may record the tree's size

	closeOnce sync.Once

	archive   archive.Store
	archived  []ArchivedSegment // the oldest segments, moved to the archive; under mu
	manifest  *os.File          // archived.log
	archiveMu sync.Mutex        // one Archive at a time
	fetchMu   sync.Mutex        // one fetch from the archive at a time

	cpMu    sync.Mutex
	cpFile  *os.File // checkpoints.log
	cpEnd   int64
	cpIdx   *os.File // checkpoints.idx
	cpCount int64
	latest  *audit.StoredCheckpoint
}

// segment is the newest segment, the one appends go to. Its records'
// offsets are in memory: at most SegmentEntries and one batch.
type segment struct {
	first   int64
	file    *segmentFile
	end     int64   // bytes of whole records
	alloc   int64   // bytes in the file: whole records, then zeros
	offsets []int64 // where each record starts
}

func (s *segment) count() int64 { return int64(len(s.offsets)) }

// preallocate is how far the newest segment is written with zeros ahead of
// its records. A sync after a write within the file's size flushes the
// data alone; one that grows the file must also commit its new size to the
// file system's journal, which takes as long again. Zeros are not records:
// a record is never empty, so readers stop at the first zero length.
const preallocate = 1 << 20

var _ audit.Backend = (*Log)(nil)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const (
	recordHeader = 8 // 4 bytes length, 4 bytes CRC-32C of the data
	hashSize     = 32
)

// ErrCorrupt means stored data does not match its checksum or its place.
var ErrCorrupt = errors.New("audit log corrupt")

// Open opens (creating) the log in cfg.Dir, cuts off a record torn by a
// crash, drops tree nodes that were not made durable, and takes an exclusive
// lock on the directory.
func Open(cfg Config) (*Log, error) {
	if cfg.SegmentEntries <= 0 {
		cfg.SegmentEntries = 1 << 16
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	lock, err := durable.LockDir(cfg.Dir, "audit log")
	if err != nil {
		return nil, err
	}
	l := &Log{dir: cfg.Dir, perSeg: cfg.SegmentEntries, log: orDiscard(cfg.Logger), lock: lock, archive: cfg.Archive,
		files: sealedFiles{open: map[int64]*cachedSegment{}}}
	l.files.load = l.openSealedSegment
	if err := l.load(); err != nil {
		l.Close()
		return nil, err
	}
	l.loaded = true
	return l, nil
}

// load reads what the log has acknowledged for certain (the newest
// checkpoint and the tree's synced size) before the segments, so that a
// damaged record inside that range is never mistaken for a torn tail.
func (l *Log) load() error {
	if err := l.loadCheckpoints(); err != nil {
		return err
	}
	treeSize, err := l.readTreeState()
	if err != nil {
		return err
	}
	acked := treeSize
	if cp := l.latest; cp != nil && cp.Size > acked {
		acked = cp.Size
	}
	if err := l.loadArchived(); err != nil {
		return err
	}
	if err := l.loadSegments(acked); err != nil {
		return err
	}
	return l.loadTree(treeSize)
}

var segName = regexp.MustCompile(`^seg-(\d{20})\.log$`)

// loadSegments finds the segments. A sealed one is known from its index
// alone (its records are read when asked for); the newest is read whole.
func (l *Log) loadSegments(acked int64) error {
	names, err := filepath.Glob(filepath.Join(l.dir, "seg-*.log"))
	if err != nil {
		return err
	}
	sort.Strings(names)
	// Indexes a crash left half written are rewritten below.
	if tmp, err := filepath.Glob(filepath.Join(l.dir, "seg-*.idx.tmp*")); err == nil {
		for _, name := range tmp {
			os.Remove(name)
		}
	}
	for i, name := range names {
		m := segName.FindStringSubmatch(filepath.Base(name))
		if m == nil {
			return fmt.Errorf("audit log: unexpected file %s", name)
		}
		first, _ := strconv.ParseInt(m[1], 10, 64)
		if a, ok := l.isArchived(first); ok && first < l.size && i < len(names)-1 {
			// Archived, recorded, and not yet removed when the process
			// stopped: the archive's copy was checked, and this one goes,
			// once it is shown to be the file that was archived.
			sf, err := openChecked(name, a)
			if err != nil {
				return fmt.Errorf("%w: %s says segment %d was archived, but the one here is not the file it recorded: %v", ErrCorrupt, manifestName, first, err)
			}
			sf.release()
			os.Remove(name)
			os.Remove(indexPath(name))
			l.log.Info("audit log: removed a segment archived before the last stop", "first", first)
			continue
		}
		if first != l.size {
			return fmt.Errorf("%w: segment %s starts at %d, but %d entries precede it", ErrCorrupt, filepath.Base(name), first, l.size)
		}
		if i < len(names)-1 {
			n, err := l.sealedCount(name, first)
			if err != nil {
				return err
			}
			l.sealed = append(l.sealed, first)
			l.size += n
			continue
		}
		seg, err := l.openSegment(name, first, acked)
		if err != nil {
			return err
		}
		l.active = seg
		l.size += seg.count()
	}
	if l.size > 0 {
		last, err := l.Read(context.Background(), l.size-1, l.size)
		if err != nil {
			return err
		}
		l.lastLeaf = audit.LeafHash(last[0])
	}
	return nil
}

// openSegment reads the newest segment's records. It may end in a record
// torn by a crash, which is cut off (it was never acknowledged); a damaged
// record with whole records after it, or one that a checkpoint or the
// synced tree already covers (index below acked), is corruption, not a
// tear. The bytes cut off are kept beside the segment for inspection.
func (l *Log) openSegment(name string, first int64, acked int64) (*segment, error) {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	seg := &segment{first: first, file: newSegmentFile(f, nil)}
	end, bad, followed, err := scanRecords(f, 0, audit.MaxEntrySize, func(off int64, _ []byte) {
		seg.offsets = append(seg.offsets, off)
	})
	if err == nil && bad != "" {
		at := first + seg.count()
		switch {
		case followed:
			err = fmt.Errorf("%w: entry %d in %s: %s, with more records after it", ErrCorrupt, at, filepath.Base(name), bad)
		case at < acked:
			err = fmt.Errorf("%w: entry %d in %s: %s, but the log had acknowledged %d entries (checkpoint or synced tree); refusing to cut it off", ErrCorrupt, at, filepath.Base(name), bad, acked)
		default:
			err = l.cutTail(f, name, end, at, bad)
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	seg.end = end
	if seg.alloc, err = fileSize(f); err != nil {
		f.Close()
		return nil, err
	}
	return seg, nil
}

func fileSize(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("audit log: %w", err)
	}
	return st.Size(), nil
}

// cutTail saves the bytes of a torn record beside the segment, then cuts
// them off.
func (l *Log) cutTail(f *os.File, name string, end, at int64, why string) error {
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	tail := make([]byte, st.Size()-end)
	if _, err := f.ReadAt(tail, end); err != nil {
		return fmt.Errorf("audit log: read torn tail: %w", err)
	}
	tail = bytes.TrimRight(tail, "\x00") // the preallocated zeros after it
	kept := fmt.Sprintf("%s.torn-%d", filepath.Base(name), time.Now().UnixNano())
	if err := durable.WriteAtomic(l.dir, kept, tail); err != nil {
		return fmt.Errorf("audit log: keep torn tail: %w", err)
	}
	l.log.Warn("audit log: cut off a record torn by a crash (it was never acknowledged)",
		"segment", filepath.Base(name), "entry", at, "why", why, "bytes", len(tail), "kept_in", kept)
	if err := f.Truncate(end); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return durable.Datasync(f)
}

// Append implements audit.Sequencer: the whole batch goes to one segment
// in one write and one sync, so it is stored entirely or not at all. A new
// segment starts between batches once the active one has SegmentEntries.
func (l *Log) Append(ctx context.Context, entries []*audit.Entry) error {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	l.mu.RLock()
	broken, size, prev := l.broken, l.size, l.lastLeaf
	full := l.active == nil || l.active.count() >= l.perSeg
	l.mu.RUnlock()
	if broken != nil {
		return broken
	}
	if full {
		if err := l.startSegment(size); err != nil {
			return err
		}
	}
	seg := l.active // only Append changes it, and this is the only Append
	data, leaves, err := audit.Sequence(entries, size, prev)
	if err != nil {
		return err
	}
	n := 0
	for _, d := range data {
		n += recordHeader + len(d)
	}
	buf := make([]byte, 0, n)
	offsets := make([]int64, 0, len(entries))
	for _, d := range data {
		offsets = append(offsets, seg.end+int64(len(buf)))
		buf = appendRecord(buf, d)
	}
	size += int64(len(entries))
	prev = leaves[len(leaves)-1]
	if err := l.write(seg, buf, offsets); err != nil {
		return err
	}
	l.mu.Lock()
	if l.leafBase+int64(len(l.leaves)) != size-int64(len(leaves)) || len(l.leaves) > maxCachedLeaves {
		// The cache fell behind (or was never filled): start it afresh here.
		l.leaves, l.leafBase = nil, size-int64(len(leaves))
	}
	l.leaves = append(l.leaves, leaves...)
	l.size, l.lastLeaf = size, prev
	l.mu.Unlock()
	return nil
}

// maxCachedLeaves bounds the leaf hash cache (about 64 bytes a leaf) when
// the tree falls behind; the tree then reads older entries back.
const maxCachedLeaves = 1 << 16

// LeafHashes implements audit.Sequencer: from memory for the newest
// entries, else by reading and hashing them.
func (l *Log) LeafHashes(ctx context.Context, from, to int64) ([][]byte, error) {
	l.mu.RLock()
	if from >= l.leafBase && to <= l.leafBase+int64(len(l.leaves)) {
		out := append([][]byte(nil), l.leaves[from-l.leafBase:to-l.leafBase]...)
		l.mu.RUnlock()
		return out, nil
	}
	l.mu.RUnlock()
	data, err := l.Read(ctx, from, to)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(data))
	for i, d := range data {
		out[i] = audit.LeafHash(d)
	}
	return out, nil
}

// write appends whole records to seg and syncs them. On failure the
// segment is cut back to its last whole record; if that fails too, the log
// refuses every later write.
func (l *Log) write(seg *segment, buf []byte, offsets []int64) error {
	var err error
	if need := seg.end + int64(len(buf)); need > seg.alloc {
		// Zeros first, records over them: one sync makes both durable.
		err = writeZeros(seg.file.f, seg.alloc, need+preallocate)
		if err == nil {
			seg.alloc = need + preallocate
		}
	}
	if err == nil {
		_, err = seg.file.f.WriteAt(buf, seg.end)
	}
	if err == nil {
		err = durable.Datasync(seg.file.f)
	}
	if err != nil {
		seg.alloc = seg.end
		if terr := seg.file.f.Truncate(seg.end); terr != nil {
			l.mu.Lock()
			l.broken = fmt.Errorf("%w: a failed write could not be undone: %v", audit.ErrBroken, err)
			l.mu.Unlock()
		}
		return fmt.Errorf("audit log: write: %w", err)
	}
	l.mu.Lock()
	seg.offsets = append(seg.offsets, offsets...)
	seg.end += int64(len(buf))
	l.mu.Unlock()
	return nil
}

// seal cuts the preallocated zeros off a segment.
func (s *segment) seal() error {
	if s.alloc <= s.end {
		return nil
	}
	if err := s.file.f.Truncate(s.end); err != nil {
		return fmt.Errorf("audit log: seal segment: %w", err)
	}
	if err := durable.Datasync(s.file.f); err != nil {
		return fmt.Errorf("audit log: seal segment: %w", err)
	}
	s.alloc = s.end
	return nil
}

// writeZeros fills f with zeros from from to to.
func writeZeros(f *os.File, from, to int64) error {
	zeros := make([]byte, min(to-from, 64<<10))
	for off := from; off < to; {
		n, err := f.WriteAt(zeros[:min(int64(len(zeros)), to-off)], off)
		if err != nil {
			return err
		}
		off += int64(n)
	}
	return nil
}

// startSegment creates the segment whose first entry is first, after
// sealing the one it follows: its preallocated zeros cut off, and its index
// written.
func (l *Log) startSegment(first int64) error {
	prev := l.active
	if prev != nil {
		if err := prev.seal(); err != nil {
			return err
		}
		if err := writeIndex(l.dir, segmentPath(l.dir, prev.first), prev.offsets, prev.end); err != nil {
			return fmt.Errorf("audit log: write segment index: %w", err)
		}
	}
	name := segmentPath(l.dir, first)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	// The new file's name must be durable too, or a crash could lose it.
	if err := durable.SyncDir(l.dir); err != nil {
		f.Close()
		os.Remove(name)
		return err
	}
	l.mu.Lock()
	if prev != nil {
		l.sealed = append(l.sealed, prev.first)
	}
	l.active = &segment{first: first, file: newSegmentFile(f, nil)}
	l.mu.Unlock()
	if prev != nil {
		prev.file.release() // readers still in it finish first
	}
	return nil
}

// Size implements audit.Sequencer.
func (l *Log) Size(ctx context.Context) (int64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.size, nil
}

// Read implements audit.Sequencer: one read per segment the range touches.
func (l *Log) Read(ctx context.Context, from, to int64) ([][]byte, error) {
	l.mu.RLock()
	size := l.size
	l.mu.RUnlock()
	if from < 0 || to < from || to > size {
		return nil, fmt.Errorf("audit log: read [%d, %d) of %d entries", from, to, size)
	}
	out := make([][]byte, 0, to-from)
	for from < to {
		part, err := l.readSegment(from, to)
		if err != nil {
			return nil, err
		}
		out = append(out, part...)
		from += int64(len(part))
	}
	return out, nil
}

// readSegment reads entries from from on, up to to or the end of the
// segment that holds from, whichever comes first.
func (l *Log) readSegment(from, to int64) ([][]byte, error) {
	l.mu.RLock()
	if a := l.active; a != nil && from >= a.first {
		n := min(to, a.first+a.count()) - from
		offs := make([]int64, n+1)
		copy(offs, a.offsets[from-a.first:])
		offs[n] = a.end
		if from+n < a.first+a.count() {
			offs[n] = a.offsets[from+n-a.first]
		}
		f := a.file
		f.acquire()
		l.mu.RUnlock()
		defer f.release()
		return readRecords(f.f, offs, from)
	}
	k := sort.Search(len(l.sealed), func(k int) bool { return l.sealed[k] > from }) - 1
	first, next := l.sealed[k], l.active.first
	if k+1 < len(l.sealed) {
		next = l.sealed[k+1]
	}
	l.mu.RUnlock()
	f, err := l.files.acquire(first, next-first)
	if err != nil {
		return nil, err
	}
	defer f.release()
	offs, err := f.offsets(from-first, min(to, next)-first)
	if err != nil {
		return nil, err
	}
	return readRecords(f.f, offs, from)
}

// Lead implements audit.Backend: one process owns the directory, so it always leads.
func (l *Log) Lead(ctx context.Context) (audit.Lease, error) { return dirLease{}, nil }

// dirLease is the directory lock, held for the life of the Log.
type dirLease struct{}

func (dirLease) Check(context.Context) error { return nil }
func (dirLease) Release()                    {}

// Query implements audit.Backend by scanning from the cursor.
func (l *Log) Query(ctx context.Context, q audit.Query) ([]audit.Stored, int64, error) {
	size, _ := l.Size(ctx)
	if q.MaxScan <= 0 {
		q.MaxScan = 100_000
	}
	if q.Limit <= 0 {
		q.Limit = 100
	}
	var out []audit.Stored
	last := q.After
	for from := q.After + 1; from < size && len(out) < q.Limit && from-q.After-1 < int64(q.MaxScan); {
		to := min(from+512, size)
		data, err := l.Read(ctx, from, to)
		if err != nil {
			return nil, 0, err
		}
		for i, d := range data {
			e, err := audit.DecodeEntry(d)
			if err != nil {
				return nil, 0, fmt.Errorf("%w: entry %d: %v", ErrCorrupt, from+int64(i), err)
			}
			last = from + int64(i)
			if matches(q, e) {
				out = append(out, audit.Stored{Entry: e, Data: d})
				if len(out) == q.Limit {
					break
				}
			}
		}
		from = to
	}
	return out, last, nil
}

func matches(q audit.Query, e *audit.Entry) bool {
	return (q.Agent == "" || e.Agent == q.Agent) && (q.Kind == "" || e.Kind == q.Kind) && (q.DecisionID == "" || e.DecisionID == q.DecisionID) &&
		(q.Outcome == "" || e.Outcome == q.Outcome) && (q.Since.IsZero() || !e.Time.Before(q.Since)) &&
		(q.Until.IsZero() || e.Time.Before(q.Until))
}

var cursorName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// Cursor implements audit.Backend.
func (l *Log) Cursor(ctx context.Context, name string) (int64, error) {
	if !cursorName.MatchString(name) {
		return 0, fmt.Errorf("audit log: cursor name %q", name)
	}
	b, err := os.ReadFile(filepath.Join(l.dir, "cursor-"+name))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// SetCursor implements audit.Backend: written to a new file and renamed, so
// a crash leaves the old value or the new, never half of one.
func (l *Log) SetCursor(ctx context.Context, name string, next int64) error {
	if !cursorName.MatchString(name) {
		return fmt.Errorf("audit log: cursor name %q", name)
	}
	return durable.WriteAtomic(l.dir, "cursor-"+name, []byte(strconv.FormatInt(next, 10)+"\n"))
}

// Close implements audit.Backend. Closing twice is harmless.
func (l *Log) Close() error {
	var err error
	l.closeOnce.Do(func() { err = l.close() })
	return err
}

func (l *Log) close() error {
	var errs []error
	if a := l.active; a != nil {
		if l.broken == nil {
			errs = append(errs, a.seal())
		}
		a.file.release()
	}
	if l.loaded && l.broken == nil {
		errs = append(errs, l.syncTree()) // the next start need not grow it again
	}
	l.files.closeAll()
	if l.manifest != nil {
		errs = append(errs, l.manifest.Close())
	}
	for _, f := range l.levels {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	for _, f := range []*os.File{l.cpFile, l.cpIdx, l.lock} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	return errors.Join(errs...)
}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
