package filelog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/warden-run/warden/internal/audit"
)

// ReadItems reads the log in dir for verification, read-only and without
// the directory lock, so that it works on a copy, on a log whose files were
// tampered with, and beside a running server (which it sees as a snapshot:
// the segments and the checkpoints there were when it started). Records are
// handed on as stored, checksum or not: their content is what verification
// judges. A record cut short ends its file. It reads as it goes, holding one
// entry and one checkpoint at a time; Close is not needed, the last file is
// closed at the end.
func ReadItems(dir string) (audit.Source, error) {
	names, err := filepath.Glob(filepath.Join(dir, "seg-*.log"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	cf, err := os.Open(filepath.Join(dir, "checkpoints.log"))
	if err != nil {
		return nil, fmt.Errorf("audit log %s: %w", dir, err)
	}
	st, err := cf.Stat()
	if err != nil {
		cf.Close()
		return nil, fmt.Errorf("audit log %s: %w", dir, err)
	}
	return &dirSource{segs: names, cps: newRecordReader(cf, st.Size())}, nil
}

type dirSource struct {
	segs  []string
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
			f, err := os.Open(s.segs[0])
			if err != nil {
				return err
			}
			st, err := f.Stat()
			if err != nil {
				f.Close()
				return err
			}
			s.segs = s.segs[1:]
			s.seg = newRecordReader(f, st.Size())
		}
		data, err := s.seg.next()
		if err != nil {
			return err
		}
		if data == nil {
			s.seg.close()
			s.seg = nil
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
	f    *os.File
	r    *bufio.Reader
	left int64
}

func newRecordReader(f *os.File, size int64) *recordReader {
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

func (r *recordReader) close() { r.f.Close() }

// unexpectedEnd: the file was shorter than its size said (cut while being
// read); anything else is an error.
func unexpectedEnd(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("audit log: a file shrank while it was read: %w", err)
	}
	return err
}
