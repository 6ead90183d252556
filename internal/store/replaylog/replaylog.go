// Package replaylog is the embedded store's record of single-use values
// (client assertion ids): an in-memory set in front of an append-only,
// checksummed log on disk. Concurrent records share one write and one
// fdatasync (group commit), so each costs microseconds of CPU rather than a
// database transaction, and nothing acknowledged is lost in a crash.
package replaylog

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/warden-run/warden/internal/durable"
	"github.com/warden-run/warden/internal/store"
)

// segmentSpan is how long one segment file takes new records before the
// next one starts; a segment is deleted once every value in it has expired.
const segmentSpan = 10 * time.Minute

// maxBatch bounds how many records share one write and sync.
const maxBatch = 1024

var errClosed = errors.New("replay log closed")

// Log implements store.ReplayStore.
type Log struct {
	dir  string
	lock *os.File // held for the life of the Log: one process per directory
	now  func() time.Time

	mu   sync.Mutex
	seen map[key]int64 // value -> expiry, unix microseconds
	segs []*segment    // oldest first; the last one takes appends

	reqs   chan *write
	broken error // set by the writer goroutine only
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

type key struct{ scope, value string }

type segment struct {
	path   string
	start  time.Time
	maxExp int64 // latest expiry recorded in it
	size   int64 // bytes of whole records
	f      *os.File
}

type write struct {
	line string
	exp  int64
	done chan error
}

var _ store.ReplayStore = (*Log)(nil)

// Open loads the log in dir (creating it), dropping a torn last record left
// by a crash, and takes an exclusive lock on the directory.
func Open(dir string) (*Log, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("replay log: %w", err)
	}
	lock, err := durable.LockDir(dir, "replay log")
	if err != nil {
		return nil, err
	}
	l := &Log{dir: dir, lock: lock, now: time.Now, seen: make(map[key]int64),
		reqs: make(chan *write, maxBatch), stop: make(chan struct{}), done: make(chan struct{})}
	if err := l.load(); err != nil {
		lock.Close()
		return nil, err
	}
	go l.run()
	return l, nil
}

func (l *Log) load() error {
	names, err := filepath.Glob(filepath.Join(l.dir, "used-*.log"))
	if err != nil {
		return err
	}
	sort.Strings(names) // zero-padded start times: lexical order is time order
	for i, name := range names {
		start, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(name), "used-"), ".log"), 10, 64)
		if err != nil {
			return fmt.Errorf("replay log: unexpected file %s", name)
		}
		seg := &segment{path: name, start: time.UnixMicro(start)}
		if err := l.loadSegment(seg, i == len(names)-1); err != nil {
			return err
		}
		l.segs = append(l.segs, seg)
	}
	return nil
}

// loadSegment reads one segment into memory. Only the newest segment may end
// in a torn record (a write cut short by a crash, never acknowledged); it is
// cut off. Damage anywhere else is an error: silently forgetting recorded
// values would re-open them to replay.
func (l *Log) loadSegment(seg *segment, newest bool) error {
	f, err := os.OpenFile(seg.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("replay log: %w", err)
	}
	r := bufio.NewReader(f)
	var good int64
	for n := 1; ; n++ {
		line, err := r.ReadString('\n')
		if errors.Is(err, io.EOF) {
			if line != "" {
				if !newest {
					f.Close()
					return fmt.Errorf("replay log: %s ends in a partial record", seg.path)
				}
				if err := f.Truncate(good); err != nil {
					f.Close()
					return fmt.Errorf("replay log: cut torn record: %w", err)
				}
			}
			break
		}
		if err != nil {
			f.Close()
			return fmt.Errorf("replay log: %w", err)
		}
		k, exp, perr := parseLine(line)
		if perr != nil {
			f.Close()
			return fmt.Errorf("replay log: %s record %d: %w", seg.path, n, perr)
		}
		l.seen[k] = exp
		seg.maxExp = max(seg.maxExp, exp)
		good += int64(len(line))
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return err
	}
	seg.f, seg.size = f, good
	return nil
}

// A record is "<crc32> <expiry> <scope> <value>\n", the last two base64url
// so that no value can forge a separator, the CRC over the rest of the line.
func formatLine(k key, exp int64) string {
	body := strconv.FormatInt(exp, 10) + " " + base64.RawURLEncoding.EncodeToString([]byte(k.scope)) + " " +
		base64.RawURLEncoding.EncodeToString([]byte(k.value))
	return fmt.Sprintf("%08x %s\n", crc32.ChecksumIEEE([]byte(body)), body)
}

func parseLine(line string) (key, int64, error) {
	line = strings.TrimSuffix(line, "\n")
	sum, body, ok := strings.Cut(line, " ")
	if !ok || len(sum) != 8 {
		return key{}, 0, errors.New("malformed")
	}
	want, err := strconv.ParseUint(sum, 16, 32)
	if err != nil || uint32(want) != crc32.ChecksumIEEE([]byte(body)) {
		return key{}, 0, errors.New("checksum mismatch")
	}
	f := strings.Split(body, " ")
	if len(f) != 3 {
		return key{}, 0, errors.New("malformed")
	}
	exp, err1 := strconv.ParseInt(f[0], 10, 64)
	scope, err2 := base64.RawURLEncoding.DecodeString(f[1])
	value, err3 := base64.RawURLEncoding.DecodeString(f[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return key{}, 0, errors.New("malformed")
	}
	return key{string(scope), string(value)}, exp, nil
}

// MarkUsed implements store.ReplayStore. It returns once the record is on
// disk. A value recorded or being recorded is a replay until Prune drops it.
func (l *Log) MarkUsed(ctx context.Context, scope, value string, expires time.Time) error {
	k := key{scope, value}
	exp := expires.UnixMicro()
	l.mu.Lock()
	if _, ok := l.seen[k]; ok {
		l.mu.Unlock()
		return store.ErrReplay
	}
	l.seen[k] = exp
	l.mu.Unlock()

	w := &write{line: formatLine(k, exp), exp: exp, done: make(chan error, 1)}
	var err error
	select {
	case <-l.stop:
		err = errClosed
	case <-ctx.Done():
		err = ctx.Err()
	case l.reqs <- w:
		// Once queued, wait for the outcome even if ctx ends. If the writer
		// has stopped, the write may have been queued after its last drain.
		select {
		case err = <-w.done:
		case <-l.done:
			select {
			case err = <-w.done:
			default:
				err = errClosed
			}
		}
	}
	if err != nil {
		// Not recorded: free the value again. Until now it was refused to
		// others, which fails closed.
		l.mu.Lock()
		delete(l.seen, k)
		l.mu.Unlock()
		return fmt.Errorf("record used value: %w", err)
	}
	return nil
}

func (l *Log) run() {
	defer close(l.done)
	batch := make([]*write, 0, maxBatch)
	var buf strings.Builder
	for {
		select {
		case <-l.stop:
			for {
				select {
				case w := <-l.reqs:
					w.done <- errClosed
				default:
					return
				}
			}
		case w := <-l.reqs:
			batch = append(batch[:0], w)
		drain:
			for len(batch) < maxBatch {
				select {
				case w := <-l.reqs:
					batch = append(batch, w)
				default:
					break drain
				}
			}
			buf.Reset()
			var maxExp int64
			for _, w := range batch {
				buf.WriteString(w.line)
				maxExp = max(maxExp, w.exp)
			}
			err := l.append(buf.String(), maxExp)
			for _, w := range batch {
				w.done <- err
			}
		}
	}
}

// append writes records to the newest segment and syncs them. After a
// failed write the segment is cut back to its last whole record; if even that
// fails, the log refuses every later write rather than append after damage.
func (l *Log) append(records string, maxExp int64) error {
	if l.broken != nil {
		return l.broken
	}
	seg, err := l.current()
	if err != nil {
		return err
	}
	_, err = seg.f.WriteString(records)
	if err == nil {
		err = durable.Datasync(seg.f)
	}
	if err != nil {
		if terr := errors.Join(seg.f.Truncate(seg.size), seekTo(seg.f, seg.size)); terr != nil {
			l.broken = fmt.Errorf("replay log unusable after a failed write: %w", err)
		}
		return err
	}
	l.mu.Lock()
	seg.size += int64(len(records))
	seg.maxExp = max(seg.maxExp, maxExp)
	l.mu.Unlock()
	return nil
}

func seekTo(f *os.File, off int64) error {
	_, err := f.Seek(off, io.SeekStart)
	return err
}

// current returns the segment taking appends, starting a new one when the
// newest is older than segmentSpan. Only the writer goroutine calls it.
func (l *Log) current() (*segment, error) {
	now := l.now()
	l.mu.Lock()
	var seg *segment
	if n := len(l.segs); n > 0 && now.Sub(l.segs[n-1].start) < segmentSpan {
		seg = l.segs[n-1]
	}
	l.mu.Unlock()
	if seg != nil {
		return seg, nil
	}
	path := filepath.Join(l.dir, fmt.Sprintf("used-%020d.log", now.UnixMicro()))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	// The new file's name must be durable too, or a crash could lose the file.
	if err := durable.SyncDir(l.dir); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	seg = &segment{path: path, start: now, f: f}
	l.mu.Lock()
	l.segs = append(l.segs, seg)
	l.mu.Unlock()
	return seg, nil
}

// Prune forgets values that expired before now and deletes segment files
// holding nothing else.
func (l *Log) Prune(now time.Time) error {
	cut := now.UnixMicro()
	l.mu.Lock()
	for k, exp := range l.seen {
		if exp < cut {
			delete(l.seen, k)
		}
	}
	var keep, drop []*segment
	for i, s := range l.segs {
		// The newest segment stays: it takes appends.
		if i < len(l.segs)-1 && s.maxExp < cut {
			drop = append(drop, s)
		} else {
			keep = append(keep, s)
		}
	}
	l.segs = keep
	l.mu.Unlock()
	var errs []error
	for _, s := range drop {
		s.f.Close()
		if err := os.Remove(s.path); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Len returns how many values are remembered.
func (l *Log) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.seen)
}

// Close stops the writer, failing writes still queued, and releases the directory.
func (l *Log) Close() error {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		l.mu.Lock()
		for _, s := range l.segs {
			s.f.Close()
		}
		l.mu.Unlock()
		l.lock.Close()
	})
	return nil
}
