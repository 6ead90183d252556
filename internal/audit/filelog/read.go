package filelog

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/warden-run/warden/internal/audit"
)

// ReadItems reads the log in dir for verification, read-only and without
// the directory lock, so that it works on a copy, on a log whose files were
// tampered with, and beside a running server (which it sees as a snapshot).
// Records are handed on as stored, checksum or not: their content is what
// verification judges. A record cut short ends its file.
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
	defer cf.Close()
	var cps []audit.StoredCheckpoint
	if err := readRecords(cf, func(body []byte) {
		if c, ok := parseCheckpointRecord(body); ok {
			cps = append(cps, c)
		}
	}); err != nil {
		return nil, err
	}
	return &dirSource{segs: names, cps: cps}, nil
}

type dirSource struct {
	segs  []string
	buf   [][]byte
	cps   []audit.StoredCheckpoint
	count int64
}

func (s *dirSource) Next() (audit.Item, error) {
	for len(s.buf) == 0 && len(s.segs) > 0 {
		f, err := os.Open(s.segs[0])
		if err != nil {
			return audit.Item{}, err
		}
		err = readRecords(f, func(data []byte) { s.buf = append(s.buf, data) })
		f.Close()
		if err != nil {
			return audit.Item{}, err
		}
		s.segs = s.segs[1:]
	}
	if len(s.cps) > 0 && (s.cps[0].Size <= s.count || len(s.buf) == 0) {
		c := s.cps[0]
		s.cps = s.cps[1:]
		return audit.Item{Checkpoint: true, Data: c.Signed}, nil
	}
	if len(s.buf) == 0 {
		return audit.Item{}, io.EOF
	}
	d := s.buf[0]
	s.buf = s.buf[1:]
	s.count++
	return audit.Item{Data: d}, nil
}

// readRecords calls fn with the data of every record of f, whatever its
// checksum says, until the file ends or a record is cut short.
func readRecords(f *os.File, fn func([]byte)) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	var hdr [recordHeader]byte
	for off := int64(0); off+recordHeader <= st.Size(); {
		if _, err := f.ReadAt(hdr[:], off); err != nil {
			return err
		}
		length := int64(binary.BigEndian.Uint32(hdr[:4]))
		if length == 0 || off+recordHeader+length > st.Size() {
			return nil
		}
		data := make([]byte, length)
		if _, err := f.ReadAt(data, off+recordHeader); err != nil {
			return err
		}
		fn(data)
		off += recordHeader + length
	}
	return nil
}
