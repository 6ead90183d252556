package filelog

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/durable"
)

// Checkpoints live in checkpoints.log, one record each, and are found
// through checkpoints.idx: for each, 8 bytes of tree size and 8 bytes of
// where its record starts in checkpoints.log, big-endian. Both are synced
// as each checkpoint is added, the log first. In memory there is only the
// latest checkpoint: a range of them is found by a binary search of the
// index on disk.

// A checkpoint record's data: [8 size][8 unix nanoseconds][signed note].
const (
	cpHeader   = 16
	maxNote    = 64 << 10
	cpIdxEntry = 16
)

func checkpointRecord(c audit.StoredCheckpoint) []byte {
	body := make([]byte, cpHeader, cpHeader+len(c.Signed))
	binary.BigEndian.PutUint64(body[:8], uint64(c.Size))
	binary.BigEndian.PutUint64(body[8:], uint64(c.Time.UnixNano()))
	return record(append(body, c.Signed...))
}

func parseCheckpointRecord(body []byte) (audit.StoredCheckpoint, bool) {
	if len(body) < cpHeader {
		return audit.StoredCheckpoint{}, false
	}
	return audit.StoredCheckpoint{
		Size:   int64(binary.BigEndian.Uint64(body[:8])),
		Time:   time.Unix(0, int64(binary.BigEndian.Uint64(body[8:16]))).UTC(),
		Signed: body[cpHeader:],
	}, true
}

// loadCheckpoints opens checkpoints.log and its index, checks the index's
// last entry against the log, and indexes the records after it: none after
// a clean stop, every one when the index is new or does not match. A
// checkpoint torn by a crash at the end of the log is cut off.
func (l *Log) loadCheckpoints() error {
	f, err := os.OpenFile(filepath.Join(l.dir, "checkpoints.log"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	l.cpFile = f
	idx, err := os.OpenFile(filepath.Join(l.dir, "checkpoints.idx"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	l.cpIdx = idx
	from, err := l.checkIndexedCheckpoints()
	if err != nil {
		return err
	}
	var pending []byte
	var werr error
	flush := func() {
		if werr == nil && len(pending) > 0 {
			_, werr = idx.WriteAt(pending, l.cpCount*cpIdxEntry-int64(len(pending)))
		}
		pending = pending[:0]
	}
	end, bad, followed, err := scanRecords(f, from, cpHeader+maxNote, func(off int64, body []byte) {
		if c, ok := parseCheckpointRecord(body); ok {
			pending = binary.BigEndian.AppendUint64(pending, uint64(c.Size))
			pending = binary.BigEndian.AppendUint64(pending, uint64(off))
			l.cpCount++
			c.Signed = bytes.Clone(c.Signed)
			l.latest = &c
			if len(pending) >= 4096*cpIdxEntry {
				flush()
			}
		}
	})
	flush()
	if err == nil {
		err = werr
	}
	if err == nil {
		err = durable.Datasync(idx)
	}
	if err != nil {
		return fmt.Errorf("audit log: index checkpoints: %w", err)
	}
	if bad != "" {
		if followed {
			return fmt.Errorf("%w: checkpoint record at byte %d: %s, with more after it", ErrCorrupt, end, bad)
		}
		l.log.Warn("audit log: cutting off a checkpoint torn by a crash", "why", bad)
		if err := f.Truncate(end); err != nil {
			return err
		}
	}
	l.cpEnd = end
	return nil
}

// checkIndexedCheckpoints reads the index's last entry and the checkpoint
// it points to. When they agree, the index stands (a partial entry from a
// crash is cut off) and it returns where the unindexed records start;
// otherwise it empties the index, to be built again from the start.
func (l *Log) checkIndexedCheckpoints() (int64, error) {
	size, err := fileSize(l.cpIdx)
	if err != nil {
		return 0, err
	}
	n := size / cpIdxEntry
	if n > 0 {
		size, off, err := l.indexedCheckpoint(n - 1)
		if err == nil {
			var c audit.StoredCheckpoint
			var end int64
			c, end, err = l.readCheckpointAt(off)
			if err == nil && c.Size == size {
				l.cpCount, l.latest = n, &c
				return end, l.cpIdx.Truncate(n * cpIdxEntry)
			}
		}
		l.log.Warn("audit log: rebuilding the checkpoint index", "why", err)
	}
	l.cpCount = 0
	return 0, l.cpIdx.Truncate(0)
}

// indexedCheckpoint reads entry i of the checkpoint index.
func (l *Log) indexedCheckpoint(i int64) (size, offset int64, err error) {
	var b [cpIdxEntry]byte
	if _, err := l.cpIdx.ReadAt(b[:], i*cpIdxEntry); err != nil {
		return 0, 0, fmt.Errorf("audit log: read checkpoint index: %w", err)
	}
	return int64(binary.BigEndian.Uint64(b[:8])), int64(binary.BigEndian.Uint64(b[8:])), nil
}

// readCheckpointAt reads the checkpoint record at off and returns it and
// where it ends.
func (l *Log) readCheckpointAt(off int64) (audit.StoredCheckpoint, int64, error) {
	var hdr [recordHeader]byte
	if _, err := l.cpFile.ReadAt(hdr[:], off); err != nil {
		return audit.StoredCheckpoint{}, 0, fmt.Errorf("audit log: read checkpoint: %w", err)
	}
	length := int64(binary.BigEndian.Uint32(hdr[:4]))
	if length < cpHeader || length > cpHeader+maxNote {
		return audit.StoredCheckpoint{}, 0, fmt.Errorf("%w: checkpoint record at byte %d: impossible length", ErrCorrupt, off)
	}
	body := make([]byte, length)
	if _, err := l.cpFile.ReadAt(body, off+recordHeader); err != nil {
		return audit.StoredCheckpoint{}, 0, fmt.Errorf("audit log: read checkpoint: %w", err)
	}
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(hdr[4:]) {
		return audit.StoredCheckpoint{}, 0, fmt.Errorf("%w: checkpoint record at byte %d fails its checksum", ErrCorrupt, off)
	}
	c, _ := parseCheckpointRecord(body)
	return c, off + recordHeader + length, nil
}

// AddCheckpoint implements audit.CheckpointStore. The tree nodes the
// checkpoint commits to are synced first, then the checkpoint, then its
// index entry; a failure undoes what was written.
func (l *Log) AddCheckpoint(ctx context.Context, c audit.StoredCheckpoint) error {
	if err := l.maybeSyncTree(); err != nil {
		return fmt.Errorf("audit log: sync tree: %w", err)
	}
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	rec := checkpointRecord(c)
	var entry [cpIdxEntry]byte
	binary.BigEndian.PutUint64(entry[:8], uint64(c.Size))
	binary.BigEndian.PutUint64(entry[8:], uint64(l.cpEnd))
	_, err := l.cpFile.WriteAt(rec, l.cpEnd)
	if err == nil {
		err = durable.Datasync(l.cpFile)
	}
	if err == nil {
		_, err = l.cpIdx.WriteAt(entry[:], l.cpCount*cpIdxEntry)
	}
	if err == nil {
		err = durable.Datasync(l.cpIdx)
	}
	if err != nil {
		l.cpIdx.Truncate(l.cpCount * cpIdxEntry)
		l.cpFile.Truncate(l.cpEnd)
		return fmt.Errorf("audit log: checkpoint: %w", err)
	}
	c.Signed = bytes.Clone(c.Signed)
	l.latest = &c
	l.cpCount++
	l.cpEnd += int64(len(rec))
	return nil
}

// Checkpoints implements audit.CheckpointStore: a binary search of the
// index for the first of size fromSize or more, then one read per
// checkpoint returned.
func (l *Log) Checkpoints(ctx context.Context, fromSize int64, limit int) ([]audit.StoredCheckpoint, error) {
	l.cpMu.Lock()
	n := l.cpCount // what lies beyond is being written
	l.cpMu.Unlock()
	var serr error
	first := sort.Search(int(n), func(i int) bool {
		size, _, err := l.indexedCheckpoint(int64(i))
		if err != nil && serr == nil {
			serr = err
		}
		return err != nil || size >= fromSize
	})
	if serr != nil {
		return nil, serr
	}
	var out []audit.StoredCheckpoint
	for i := int64(first); i < n && (limit <= 0 || len(out) < limit); i++ {
		size, off, err := l.indexedCheckpoint(i)
		if err != nil {
			return nil, err
		}
		if size < fromSize {
			continue // out of order: only a log edited by hand has that
		}
		c, _, err := l.readCheckpointAt(off)
		if err != nil {
			return nil, err
		}
		if c.Size != size {
			return nil, fmt.Errorf("%w: checkpoint %d is not of the size its index gives", ErrCorrupt, i)
		}
		out = append(out, c)
	}
	return out, nil
}

// LatestCheckpoint implements audit.CheckpointStore.
func (l *Log) LatestCheckpoint(ctx context.Context) (audit.StoredCheckpoint, error) {
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	if l.latest == nil {
		return audit.StoredCheckpoint{}, audit.ErrNoCheckpoint
	}
	c := *l.latest
	c.Signed = bytes.Clone(c.Signed)
	return c, nil
}
