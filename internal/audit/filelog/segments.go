package filelog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/durable"
)

// A sealed segment (every segment but the newest) has an index beside it,
// seg-<first>.idx: the byte offset of each of its records, then the
// segment's length, each 8 bytes big-endian. It is written once, synced,
// when the segment is sealed, and rebuilt from the segment if it is missing
// or does not match. The log keeps in memory only the first index of each
// sealed segment, the offsets of the newest segment's records, and a few
// open sealed segments: its memory does not grow with the log.

// maxOpenSealed is how many sealed segments stay open for reading (two
// files each): those of a log of 2 million entries, at the default size.
const maxOpenSealed = 32

// segmentFile is an open segment shared by readers: it is closed when its
// owner (the active slot or the cache of sealed segments) has let it go and
// the last reader is done.
type segmentFile struct {
	f    *os.File
	idx  *os.File // sealed segments only
	refs atomic.Int64
}

func newSegmentFile(f, idx *os.File) *segmentFile {
	s := &segmentFile{f: f, idx: idx}
	s.refs.Store(1) // the owner's
	return s
}

// acquire takes a reader's reference; only while the owner holds its own.
func (s *segmentFile) acquire() { s.refs.Add(1) }

func (s *segmentFile) release() {
	if s.refs.Add(-1) == 0 {
		s.f.Close()
		if s.idx != nil {
			s.idx.Close()
		}
	}
}

// sealedFiles keeps up to maxOpenSealed sealed segments open, the most
// recently read ones.
type sealedFiles struct {
	// open opens the sealed segment starting at first, of count records:
	// in the data directory, or fetched from the archive.
	load func(first, count int64) (*segmentFile, error)
	mu   sync.Mutex
	open map[int64]*cachedSegment // by first index
	tick uint64
}

type cachedSegment struct {
	file *segmentFile
	used uint64
}

func segmentPath(dir string, first int64) string {
	return filepath.Join(dir, fmt.Sprintf("seg-%020d.log", first))
}

func indexPath(segment string) string { return strings.TrimSuffix(segment, ".log") + ".idx" }

// acquire returns the sealed segment starting at first, holding count
// records, with a reader's reference the caller releases.
func (c *sealedFiles) acquire(first, count int64) (*segmentFile, error) {
	c.mu.Lock()
	if cs, ok := c.open[first]; ok {
		c.tick++
		cs.used = c.tick
		cs.file.acquire()
		c.mu.Unlock()
		return cs.file, nil
	}
	c.mu.Unlock()
	sf, err := c.load(first, count)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cs, ok := c.open[first]; ok { // another reader opened it meanwhile
		sf.release()
		cs.file.acquire()
		return cs.file, nil
	}
	if len(c.open) >= maxOpenSealed {
		var oldest int64
		var at uint64 = ^uint64(0)
		for k, cs := range c.open {
			if cs.used < at {
				oldest, at = k, cs.used
			}
		}
		c.open[oldest].file.release()
		delete(c.open, oldest)
	}
	c.tick++
	c.open[first] = &cachedSegment{file: sf, used: c.tick}
	sf.acquire()
	return sf, nil
}

// forget lets the segment starting at first go, if it is open.
func (c *sealedFiles) forget(first int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cs, ok := c.open[first]; ok {
		cs.file.release()
		delete(c.open, first)
	}
}

// closeAll lets every cached segment go.
func (c *sealedFiles) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, cs := range c.open {
		cs.file.release()
		delete(c.open, k)
	}
}

func (c *sealedFiles) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.open)
}

// openSealed opens a sealed segment and its index, which must have count
// records.
func openSealed(name string, count int64) (*segmentFile, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	idx, err := os.Open(indexPath(name))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audit log: %w", err)
	}
	sf := newSegmentFile(f, idx)
	if st, err := idx.Stat(); err != nil || st.Size() != 8*(count+1) {
		sf.release()
		return nil, fmt.Errorf("%w: the index of %s does not hold %d records", ErrCorrupt, filepath.Base(name), count)
	}
	return sf, nil
}

// offsets reads the index entries of records [from, to) of a sealed
// segment, and the offset where record to starts (or the segment ends).
func (s *segmentFile) offsets(from, to int64) ([]int64, error) {
	b := make([]byte, 8*(to-from+1))
	if _, err := s.idx.ReadAt(b, 8*from); err != nil {
		return nil, fmt.Errorf("audit log: read segment index: %w", err)
	}
	out := make([]int64, to-from+1)
	for i := range out {
		out[i] = int64(binary.BigEndian.Uint64(b[8*i:]))
	}
	return out, nil
}

// readRecords reads the records that start at offs[0], offs[1], ... and end
// at offs[len(offs)-1] with one read, and checks each one's length and
// checksum. first is the index of the first, for errors. Each entry is a
// slice of one buffer, with no room to grow into its neighbour.
func readRecords(f *os.File, offs []int64, first int64) ([][]byte, error) {
	n := len(offs) - 1
	if n <= 0 {
		return nil, nil
	}
	base := offs[0]
	if offs[n] < base || offs[n]-base > int64(n)*(recordHeader+audit.MaxEntrySize) {
		return nil, fmt.Errorf("%w: entries %d to %d: impossible places", ErrCorrupt, first, first+int64(n)-1)
	}
	buf := make([]byte, offs[n]-base)
	if _, err := f.ReadAt(buf, base); err != nil {
		return nil, fmt.Errorf("audit log: read entries %d to %d: %w", first, first+int64(n)-1, err)
	}
	out := make([][]byte, n)
	for i := range n {
		start, end := offs[i]-base, offs[i+1]-base
		if end-start < recordHeader || end > int64(len(buf)) {
			return nil, fmt.Errorf("%w: entry %d: impossible place", ErrCorrupt, first+int64(i))
		}
		rec := buf[start:end:end]
		if int64(binary.BigEndian.Uint32(rec[:4])) != end-start-recordHeader {
			return nil, fmt.Errorf("%w: entry %d: its length is not where the index places it", ErrCorrupt, first+int64(i))
		}
		data := rec[recordHeader:]
		if crc32.Checksum(data, castagnoli) != binary.BigEndian.Uint32(rec[4:]) {
			return nil, fmt.Errorf("%w: entry %d fails its checksum", ErrCorrupt, first+int64(i))
		}
		out[i] = data
	}
	return out, nil
}

// writeIndex writes a sealed segment's index: offs are its records'
// offsets, end its length.
func writeIndex(dir, segment string, offs []int64, end int64) error {
	b := make([]byte, 0, 8*(len(offs)+1))
	for _, o := range offs {
		b = binary.BigEndian.AppendUint64(b, uint64(o))
	}
	b = binary.BigEndian.AppendUint64(b, uint64(end))
	return durable.WriteAtomic(dir, filepath.Base(indexPath(segment)), b)
}

// sealedCount returns how many records the sealed segment name holds, from
// its index when the index matches the segment, else by reading the whole
// segment (any damage in it is corruption: only the newest segment can end
// torn), and then writing the index again.
func (l *Log) sealedCount(name string, first int64) (int64, error) {
	n, err := checkIndex(name, first)
	if err == nil {
		return n, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		l.log.Warn("audit log: rebuilding a segment's index", "segment", filepath.Base(name), "why", err)
	}
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	var offs []int64
	end, bad, _, err := scanRecords(f, 0, audit.MaxEntrySize, func(off int64, _ []byte) { offs = append(offs, off) })
	if err != nil {
		return 0, err
	}
	if bad != "" {
		return 0, fmt.Errorf("%w: entry %d in sealed segment %s: %s", ErrCorrupt, first+int64(len(offs)), filepath.Base(name), bad)
	}
	if len(offs) == 0 {
		return 0, fmt.Errorf("%w: sealed segment %s holds no entry", ErrCorrupt, filepath.Base(name))
	}
	// Zeros after the records (a segment whose sealing a crash cut short)
	// are no records: cut them, as sealing would have.
	if size, err := fileSize(f); err != nil {
		return 0, err
	} else if size > end {
		if err := f.Truncate(end); err != nil {
			return 0, fmt.Errorf("audit log: seal segment: %w", err)
		}
		if err := durable.Datasync(f); err != nil {
			return 0, fmt.Errorf("audit log: seal segment: %w", err)
		}
	}
	if err := writeIndex(l.dir, name, offs, end); err != nil {
		return 0, fmt.Errorf("audit log: write segment index: %w", err)
	}
	return int64(len(offs)), nil
}

// checkIndex reads a sealed segment's index and checks what is cheap to
// check: it starts at 0, ends at the segment's length, and its last record
// is whole where the index says. It returns the number of records.
func checkIndex(name string, first int64) (int64, error) {
	idx, err := os.Open(indexPath(name))
	if err != nil {
		return 0, err
	}
	defer idx.Close()
	isz, err := fileSize(idx)
	if err != nil {
		return 0, err
	}
	if isz%8 != 0 || isz < 16 {
		return 0, fmt.Errorf("an index of %d bytes", isz)
	}
	seg, err := os.Open(name)
	if err != nil {
		return 0, err
	}
	defer seg.Close()
	ssz, err := fileSize(seg)
	if err != nil {
		return 0, err
	}
	sf := &segmentFile{f: seg, idx: idx}
	n := isz/8 - 1
	head, err := sf.offsets(0, 0)
	if err != nil {
		return 0, err
	}
	tail, err := sf.offsets(n-1, n)
	if err != nil {
		return 0, err
	}
	if head[0] != 0 || tail[1] != ssz {
		return 0, errors.New("the index does not span the segment")
	}
	if _, err := readRecords(seg, tail, first+n-1); err != nil {
		return 0, err
	}
	return n, nil
}
