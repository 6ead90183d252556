package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Export writes the log as JSON lines: every entry's canonical bytes on a
// line of its own, and after the last entry each checkpoint covers, a line
// {"checkpoint":"<signed note>"}. Verify reads it back with ReadExport.
func Export(ctx context.Context, w io.Writer, l *Log) error {
	src, err := l.Items(ctx)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	for {
		it, err := src.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if it.Checkpoint {
			line, _ := json.Marshal(map[string]string{"checkpoint": string(it.Data)})
			bw.Write(line)
		} else {
			bw.Write(it.Data)
		}
		if err := bw.WriteByte('\n'); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// ReadExport reads what Export wrote.
func ReadExport(r io.Reader) Source {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxEntrySize+maxCheckpointSize+64)
	return &exportSource{sc: sc}
}

type exportSource struct {
	sc      *bufio.Scanner
	line    int
	tooLong bool
}

var checkpointPrefix = []byte(`{"checkpoint":`)

func (s *exportSource) Next() (Item, error) {
	if !s.sc.Scan() {
		err := s.sc.Err()
		if errors.Is(err, bufio.ErrTooLong) && !s.tooLong {
			// Longer than any entry or checkpoint can be: not an entry,
			// which verification reports at its place in the log.
			s.tooLong = true
			s.line++
			return Item{Data: []byte("(line too long)")}, nil
		}
		if err != nil {
			return Item{}, fmt.Errorf("export line %d: %w", s.line+1, err)
		}
		return Item{}, io.EOF
	}
	s.line++
	b := s.sc.Bytes()
	if bytes.HasPrefix(b, checkpointPrefix) {
		var c struct {
			Checkpoint string `json:"checkpoint"`
		}
		if err := json.Unmarshal(b, &c); err != nil {
			// Not a checkpoint after all: hand it on as an entry, to be refused there.
			return Item{Data: bytes.Clone(b)}, nil
		}
		return Item{Checkpoint: true, Data: []byte(c.Checkpoint)}, nil
	}
	return Item{Data: bytes.Clone(b)}, nil
}

// Items reads the stored log for verification or export: entries with the
// stored checkpoints placed after the entries they cover.
func (l *Log) Items(ctx context.Context) (Source, error) { return ReadBackend(ctx, l.be) }

// ReadBackend reads a backend's log for verification, without a Log: the
// entries as stored, and the checkpoints after the entries they cover. It
// reads both a page at a time, so that its memory does not depend on the
// log's length.
func ReadBackend(ctx context.Context, be Backend) (Source, error) {
	// The latest checkpoint first: every checkpoint up to its size then
	// covers entries already stored when the size is read, whatever is
	// signed meanwhile (and later ones are left out).
	latest, err := be.LatestCheckpoint(ctx)
	if errors.Is(err, ErrNoCheckpoint) {
		latest, err = StoredCheckpoint{Size: -1}, nil
	}
	if err != nil {
		return nil, err
	}
	size, err := be.Size(ctx)
	if err != nil {
		return nil, err
	}
	return &storedSource{ctx: ctx, be: be, size: size, cps: checkpointPages{be: be, last: latest.Size}}, nil
}

type storedSource struct {
	ctx  context.Context
	be   Backend
	size int64
	next int64
	buf  [][]byte
	cps  checkpointPages
}

func (s *storedSource) Next() (Item, error) {
	// A checkpoint comes right after the last entry it covers. One that
	// covers more than is stored comes at the end, where Verify says so.
	c, err := s.cps.peek(s.ctx)
	if err != nil {
		return Item{}, err
	}
	if c != nil && (c.Size <= s.next || s.next >= s.size) {
		s.cps.pop()
		return Item{Checkpoint: true, Data: c.Signed}, nil
	}
	if s.next >= s.size {
		return Item{}, io.EOF
	}
	if len(s.buf) == 0 {
		to := min(s.next+4096, s.size)
		b, err := s.be.Read(s.ctx, s.next, to)
		if err != nil {
			return Item{}, err
		}
		s.buf = b
	}
	d := s.buf[0]
	s.buf = s.buf[1:]
	s.next++
	return Item{Data: d}, nil
}

// checkpointPages reads a backend's checkpoints in order of size, a page
// at a time, up to size last. A checkpoint is a fact about a size; the
// order they were stored in (two leaders in a handover may interleave) does
// not matter, and several may have one size.
type checkpointPages struct {
	be   Backend
	last int64
	page []StoredCheckpoint
	// from and skip say where the next page starts: at size from, after
	// the skip checkpoints of that size already read.
	from int64
	skip int
	done bool
}

// checkpointPage is how many checkpoints one read of a backend returns.
var checkpointPage = 1000

func (p *checkpointPages) peek(ctx context.Context) (*StoredCheckpoint, error) {
	for len(p.page) == 0 && !p.done {
		n := checkpointPage + p.skip
		page, err := p.be.Checkpoints(ctx, p.from, n)
		if err != nil {
			return nil, err
		}
		if len(page) < n {
			p.done = true
		}
		page = page[min(p.skip, len(page)):]
		for i, c := range page {
			if c.Size > p.last {
				page, p.done = page[:i], true
				break
			}
		}
		if len(page) > 0 {
			if end := page[len(page)-1].Size; end == p.from {
				p.skip += len(page)
			} else {
				p.from, p.skip = end, 0
				for _, c := range page {
					if c.Size == end {
						p.skip++
					}
				}
			}
		}
		p.page = page
	}
	if len(p.page) == 0 {
		return nil, nil
	}
	return &p.page[0], nil
}

func (p *checkpointPages) pop() { p.page = p.page[1:] }
