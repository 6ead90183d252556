package filelog

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/archive"
)

// ReadItems reads the log in dir for verification, read-only and without
// the directory lock, so that it works on a copy, on a log whose files were
// tampered with, and beside a running server (which it sees as a snapshot:
// the segments and the checkpoints there were when it started). Records are
// handed on as stored, checksum or not: their content is what verification
// judges. A record cut short ends its file. It reads as it goes, holding one
// entry and one checkpoint at a time; Close is not needed, the last file is
// closed at the end.
func ReadItems(dir string) (audit.Source, error) { return ReadItemsFrom(dir, nil) }

// ReadItemsFrom is ReadItems for a log some of whose segments are
// archived in st: those are read from st, and each is checked against the
// digest recorded when it was archived.
func ReadItemsFrom(dir string, st archive.Store) (audit.Source, error) {
	names, err := filepath.Glob(filepath.Join(dir, "seg-*.log"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	archived, err := readManifest(dir)
	if err != nil {
		return nil, err
	}
	var segs []opener
	var size int64
	for _, a := range archived {
		size = a.First + a.Count
		segs = append(segs, archivedOpener(st, a))
	}
	if size > 0 && st == nil {
		return nil, fmt.Errorf("audit log %s: entries 0 to %d are archived: name the archive to read them from (--archive)", dir, size-1)
	}
	for _, name := range names {
		if m := segName.FindStringSubmatch(filepath.Base(name)); m != nil {
			if first, _ := strconv.ParseInt(m[1], 10, 64); first < size {
				continue // archived; its local copy not yet removed
			}
		}
		segs = append(segs, fileOpener(name))
	}
	cf, err := os.Open(filepath.Join(dir, "checkpoints.log"))
	if err != nil {
		return nil, fmt.Errorf("audit log %s: %w", dir, err)
	}
	info, err := cf.Stat()
	if err != nil {
		cf.Close()
		return nil, fmt.Errorf("audit log %s: %w", dir, err)
	}
	return &dirSource{segs: segs, cps: newRecordReader(cf, info.Size())}, nil
}

// opener opens one segment for reading, with its size.
type opener func() (io.ReadCloser, int64, error)

func fileOpener(name string) opener {
	return func() (io.ReadCloser, int64, error) {
		f, err := os.Open(name)
		if err != nil {
			return nil, 0, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		return f, st.Size(), nil
	}
}

// archivedOpener reads an archived segment whole and checks it against
// the digest recorded when it was archived before any of its entries is
// judged: a changed file is named as such, not as the entries it changed.
func archivedOpener(st archive.Store, a ArchivedSegment) opener {
	return func() (io.ReadCloser, int64, error) {
		name := filepath.Base(segmentPath("", a.First))
		rc, err := st.Get(context.Background(), name)
		if err != nil {
			return nil, 0, fmt.Errorf("audit log: %w", err)
		}
		defer rc.Close()
		b, err := io.ReadAll(io.LimitReader(rc, a.LogBytes+1))
		if err != nil {
			return nil, 0, fmt.Errorf("audit log: reading %s from the archive: %w", name, err)
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); int64(len(b)) != a.LogBytes || got != a.LogSHA256 {
			return nil, 0, fmt.Errorf("%w: the archive's %s is not the file that was archived (%d bytes, sha256 %s; recorded %d, %s)",
				ErrCorrupt, name, len(b), got, a.LogBytes, a.LogSHA256)
		}
		return io.NopCloser(bytes.NewReader(b)), a.LogBytes, nil
	}
}

// readManifest reads archived.log in dir, if there is one.
func readManifest(dir string) ([]ArchivedSegment, error) {
	f, err := os.Open(filepath.Join(dir, manifestName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []ArchivedSegment
	var bad error
	if _, _, _, err := scanRecords(f, 0, 1<<16, func(off int64, data []byte) {
		var a ArchivedSegment
		if err := json.Unmarshal(data, &a); err != nil && bad == nil {
			bad = fmt.Errorf("%w: %s at byte %d: %v", ErrCorrupt, manifestName, off, err)
		}
		out = append(out, a)
	}); err != nil {
		return nil, err
	}
	return out, bad
}

type dirSource struct {
	segs  []opener
	seg   *recordReader // the segment being read
	entry []byte        // the next entry, read ahead; nil when there is none
	cps   *recordReader
	cp    *audit.StoredCheckpoint // the next checkpoint, read ahead
	count int64
}

// nextEntry reads ahead the next entry, from the next segment when one ends.
func (s *dirSource) nextEntry() error {
	for s.entry == nil {
		if s.seg == nil {
			if len(s.segs) == 0 {
				return nil
			}
			f, size, err := s.segs[0]()
			if err != nil {
				return err
			}
			s.segs = s.segs[1:]
			s.seg = newRecordReader(f, size)
		}
		data, err := s.seg.next()
		if err != nil {
			return err
		}
		if data == nil {
			err := s.seg.close()
			s.seg = nil
			if err != nil {
				return err
			}
			continue
		}
		s.entry = data
	}
	return nil
}

// nextCheckpoint reads ahead the next checkpoint; records too short to be
// one are passed over.
func (s *dirSource) nextCheckpoint() error {
	for s.cp == nil && s.cps != nil {
		body, err := s.cps.next()
		if err != nil {
			return err
		}
		if body == nil {
			s.cps.close()
			s.cps = nil
			return nil
		}
		if c, ok := parseCheckpointRecord(body); ok {
			s.cp = &c
		}
	}
	return nil
}

func (s *dirSource) Next() (audit.Item, error) {
	if err := s.nextEntry(); err != nil {
		return audit.Item{}, err
	}
	if err := s.nextCheckpoint(); err != nil {
		return audit.Item{}, err
	}
	// A checkpoint comes right after the last entry it covers; one that
	// covers more than there are comes at the end.
	if s.cp != nil && (s.cp.Size <= s.count || s.entry == nil) {
		c := s.cp
		s.cp = nil
		return audit.Item{Checkpoint: true, Data: c.Signed}, nil
	}
	if s.entry == nil {
		return audit.Item{}, io.EOF
	}
	d := s.entry
	s.entry = nil
	s.count++
	return audit.Item{Data: d}, nil
}

// recordReader reads a file of records in order, whatever their checksums
// say, up to size or a record cut short.
type recordReader struct {
	f    io.ReadCloser
	r    *bufio.Reader
	left int64
}

func newRecordReader(f io.ReadCloser, size int64) *recordReader {
	return &recordReader{f: f, r: bufio.NewReaderSize(io.LimitReader(f, size), 256<<10), left: size}
}

// next returns the next record's data, or nil at the end.
func (r *recordReader) next() ([]byte, error) {
	if r.left < recordHeader {
		return nil, nil
	}
	var hdr [recordHeader]byte
	if _, err := io.ReadFull(r.r, hdr[:]); err != nil {
		return nil, unexpectedEnd(err)
	}
	length := int64(binary.BigEndian.Uint32(hdr[:4]))
	if length == 0 || recordHeader+length > r.left {
		r.left = 0
		return nil, nil
	}
	data := make([]byte, length)
	if _, err := io.ReadFull(r.r, data); err != nil {
		return nil, unexpectedEnd(err)
	}
	r.left -= recordHeader + length
	return data, nil
}

func (r *recordReader) close() error { return r.f.Close() }

// unexpectedEnd: the file was shorter than its size said (cut while being
// read); anything else is an error.
func unexpectedEnd(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("audit log: a file shrank while it was read: %w", err)
	}
	return err
}
