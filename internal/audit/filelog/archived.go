package filelog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/warden-run/warden/internal/audit/archive"
	"github.com/warden-run/warden/internal/durable"
)

// Retention: a sealed segment whose entries a signed checkpoint covers may
// be archived: both its files are copied to an archive.Store, read back
// and compared, recorded in archived.log (synced), and only then removed
// from the data directory. The tree's nodes and the checkpoints stay, so
// inclusion and consistency proofs need nothing from the archive; reading
// an archived entry fetches its segment into archive-cache/ (checked
// against the digests recorded when it left) and reads it there.

// ArchivedSegment is one segment that left the data directory.
type ArchivedSegment struct {
	First     int64     `json:"first"`
	Count     int64     `json:"count"`
	LogSHA256 string    `json:"log_sha256"`
	IdxSHA256 string    `json:"idx_sha256"`
	LogBytes  int64     `json:"log_bytes"`
	IdxBytes  int64     `json:"idx_bytes"`
	At        time.Time `json:"archived_at"`
}

const (
	manifestName = "archived.log"
	cacheDirName = "archive-cache"
	// maxCached is how many archived segments stay fetched.
	maxCached = 8
)

// loadArchived reads archived.log: the archived segments come first in
// the log, from entry 0, one after the other. A record a crash cut short
// is cut off: its segment's files were still in place then.
func (l *Log) loadArchived() error {
	name := filepath.Join(l.dir, manifestName)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	var segs []ArchivedSegment
	var bad error
	end, why, followed, err := scanRecords(f, 0, 1<<16, func(off int64, data []byte) {
		var a ArchivedSegment
		if err := json.Unmarshal(data, &a); err != nil && bad == nil {
			bad = fmt.Errorf("%w: %s at byte %d: %v", ErrCorrupt, manifestName, off, err)
		}
		segs = append(segs, a)
	})
	if err == nil {
		err = bad
	}
	if err == nil && why != "" {
		if followed {
			err = fmt.Errorf("%w: %s at byte %d: %s", ErrCorrupt, manifestName, end, why)
		} else if err = f.Truncate(end); err == nil {
			err = durable.Datasync(f)
		}
	}
	var size int64
	for _, a := range segs {
		if err == nil && (a.First != size || a.Count <= 0) {
			err = fmt.Errorf("%w: %s: segment at %d of %d entries, but %d entries precede it", ErrCorrupt, manifestName, a.First, a.Count, size)
		}
		size += a.Count
	}
	if err == nil {
		_, err = f.Seek(end, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return err
	}
	l.manifest = f
	l.archived = segs
	for _, a := range segs {
		l.sealed = append(l.sealed, a.First)
	}
	l.size = size
	return nil
}

// isArchived says whether the segment starting at first is archived, and
// its record. l.mu is held.
func (l *Log) isArchived(first int64) (ArchivedSegment, bool) {
	i := sort.Search(len(l.archived), func(i int) bool { return l.archived[i].First >= first })
	if i < len(l.archived) && l.archived[i].First == first {
		return l.archived[i], true
	}
	return ArchivedSegment{}, false
}

// ArchiveName says where archived segments go ("" for nowhere), for
// messages and records.
func (l *Log) ArchiveName() string {
	if l.archive == nil {
		return ""
	}
	return l.archive.String()
}

// Archived lists the archived segments, oldest first.
func (l *Log) Archived() []ArchivedSegment {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return append([]ArchivedSegment(nil), l.archived...)
}

// Archive moves sealed segments to the archive, oldest first: those whose
// entries the latest signed checkpoint covers and whose file was last
// written before before. It stops at the first that is not eligible, so
// the archived segments stay the oldest. note, when set, is called for
// each once its copy is checked and before anything here changes (to put
// the move in the log itself first); its error stops the move. It
// returns the segments it moved.
func (l *Log) Archive(ctx context.Context, before time.Time, note func(ArchivedSegment) error) ([]ArchivedSegment, error) {
	if l.archive == nil {
		return nil, errors.New("audit log: no archive is configured")
	}
	l.archiveMu.Lock()
	defer l.archiveMu.Unlock()
	l.cpMu.Lock()
	var covered int64
	if l.latest != nil {
		covered = l.latest.Size
	}
	l.cpMu.Unlock()
	var done []ArchivedSegment
	for {
		l.mu.RLock()
		k := len(l.archived)
		if k >= len(l.sealed) || l.active == nil {
			l.mu.RUnlock()
			return done, nil
		}
		first, next := l.sealed[k], l.active.first
		if k+1 < len(l.sealed) {
			next = l.sealed[k+1]
		}
		l.mu.RUnlock()
		if next > covered {
			return done, nil // not yet under a signed checkpoint
		}
		st, err := os.Stat(segmentPath(l.dir, first))
		if err != nil {
			return done, fmt.Errorf("audit log: %w", err)
		}
		if !st.ModTime().Before(before) {
			return done, nil
		}
		a, err := l.archiveOne(ctx, first, next-first, note)
		if err != nil {
			return done, err
		}
		done = append(done, a)
	}
}

func (l *Log) archiveOne(ctx context.Context, first, count int64, note func(ArchivedSegment) error) (ArchivedSegment, error) {
	a := ArchivedSegment{First: first, Count: count}
	logName := segmentPath(l.dir, first)
	for _, f := range []struct {
		path string
		sum  *string
		size *int64
	}{{logName, &a.LogSHA256, &a.LogBytes}, {indexPath(logName), &a.IdxSHA256, &a.IdxBytes}} {
		sum, size, err := l.copyOut(ctx, f.path)
		if err != nil {
			return a, err
		}
		*f.sum, *f.size = sum, size
	}
	a.At = time.Now().UTC()
	if note != nil {
		if err := note(a); err != nil {
			return a, fmt.Errorf("audit log: recording the move of segment %d: %w", first, err)
		}
	}
	data, _ := json.Marshal(a)
	if _, err := l.manifest.Write(record(data)); err != nil {
		return a, fmt.Errorf("audit log: %s: %w", manifestName, err)
	}
	if err := durable.Datasync(l.manifest); err != nil {
		return a, fmt.Errorf("audit log: %s: %w", manifestName, err)
	}
	l.mu.Lock()
	l.archived = append(l.archived, a)
	l.mu.Unlock()
	l.files.forget(first) // readers holding it finish with the removed file
	os.Remove(logName)
	os.Remove(indexPath(logName))
	if err := durable.SyncDir(l.dir); err != nil {
		return a, err
	}
	l.log.Info("audit log: segment archived", "first", first, "entries", count, "bytes", a.LogBytes+a.IdxBytes, "archive", l.archive.String())
	return a, nil
}

// copyOut puts the file at path into the archive, reads the archive's
// copy back and compares it: the file may go only once it is there, whole.
func (l *Log) copyOut(ctx context.Context, path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("audit log: %w", err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", 0, err
	}
	name := filepath.Base(path)
	// A file is written once: one already there is this one (a move cut
	// short) or another log's, which is never replaced.
	got, n, err := l.digestOf(ctx, name)
	switch {
	case err == nil && (got != sum || n != size):
		return "", 0, fmt.Errorf("audit log: the archive (%s) already holds a different %s (another log's?); it is not replaced, and the segment stays here", l.archive, name)
	case err == nil:
		return sum, size, nil
	case !errors.Is(err, archive.ErrNotFound):
		return "", 0, err
	}
	if err := l.archive.Put(ctx, name, f, size); err != nil {
		return "", 0, err
	}
	got, n, err = l.digestOf(ctx, name)
	if err != nil {
		return "", 0, err
	}
	if got != sum || n != size {
		return "", 0, fmt.Errorf("audit log: the archive's copy of %s differs from it (%d bytes, sha256 %s; want %d, %s): kept here", name, n, got, size, sum)
	}
	return sum, size, nil
}

func (l *Log) digestOf(ctx context.Context, name string) (string, int64, error) {
	rc, err := l.archive.Get(ctx, name)
	if err != nil {
		return "", 0, err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		return "", 0, fmt.Errorf("audit log: reading %s back from the archive: %w", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// openSealedSegment opens the sealed segment starting at first, of count
// records: in the data directory, or fetched from the archive into the
// cache.
func (l *Log) openSealedSegment(first, count int64) (*segmentFile, error) {
	l.mu.RLock()
	a, archived := l.isArchived(first)
	l.mu.RUnlock()
	if !archived {
		return openSealed(segmentPath(l.dir, first), count)
	}
	return l.openArchived(a)
}

// openArchived opens an archived segment from the cache, fetching it
// first when it is not there. Either way both files are checked against
// the digests recorded when the segment was archived: the cache is in the
// data directory, and what is there is not taken on trust. The files are
// opened before the lock is let go, so that no other fetch trims them
// away first.
func (l *Log) openArchived(a ArchivedSegment) (*segmentFile, error) {
	if l.archive == nil {
		return nil, fmt.Errorf("audit log: entries %d to %d are archived, and no archive is configured to read them from", a.First, a.First+a.Count-1)
	}
	dir := filepath.Join(l.dir, cacheDirName)
	logName := segmentPath(dir, a.First)
	l.fetchMu.Lock()
	defer l.fetchMu.Unlock()
	if sf, err := openChecked(logName, a); err == nil {
		now := time.Now()
		os.Chtimes(logName, now, now) // most recently used
		return sf, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// The index last: a cached segment is one whose index is there.
	for _, f := range []struct {
		path, sum string
		size      int64
	}{{logName, a.LogSHA256, a.LogBytes}, {indexPath(logName), a.IdxSHA256, a.IdxBytes}} {
		if err := l.download(f.path, f.sum, f.size); err != nil {
			return nil, err
		}
	}
	sf, err := openChecked(logName, a)
	if err != nil {
		return nil, err
	}
	l.trimCache(dir, logName)
	return sf, nil
}

// openChecked opens a segment and its index and checks both against a's
// digests.
func openChecked(logName string, a ArchivedSegment) (*segmentFile, error) {
	sf, err := openSealed(logName, a.Count)
	if err != nil {
		return nil, err
	}
	for _, c := range []struct {
		f    *os.File
		sum  string
		size int64
	}{{sf.f, a.LogSHA256, a.LogBytes}, {sf.idx, a.IdxSHA256, a.IdxBytes}} {
		h := sha256.New()
		n, err := io.Copy(h, io.NewSectionReader(c.f, 0, c.size+1))
		if err != nil || n != c.size || hex.EncodeToString(h.Sum(nil)) != c.sum {
			sf.release()
			return nil, fmt.Errorf("%w: %s is not the file that was archived", ErrCorrupt, filepath.Base(c.f.Name()))
		}
	}
	return sf, nil
}

func (l *Log) download(path, sum string, size int64) error {
	name := filepath.Base(path)
	rc, err := l.archive.Get(context.Background(), name)
	if err != nil {
		return fmt.Errorf("audit log: fetching %s: %w", name, err)
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(filepath.Dir(path), name+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), rc)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("audit log: fetching %s: %w", name, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum || n != size {
		return fmt.Errorf("%w: the archive's %s is not the file that was archived (%d bytes, sha256 %s; recorded %d, %s)", ErrCorrupt, name, n, got, size, sum)
	}
	return os.Rename(tmp.Name(), path)
}

// trimCache removes the least recently used fetched segments past
// maxCached, but keep (readers that have one open keep reading it).
func (l *Log) trimCache(dir, keep string) {
	idx, _ := filepath.Glob(filepath.Join(dir, "seg-*.idx"))
	if len(idx) <= maxCached {
		return
	}
	type cached struct {
		log string
		at  time.Time
	}
	var all []cached
	for _, i := range idx {
		log := strings.TrimSuffix(i, ".idx") + ".log"
		st, err := os.Stat(log)
		if err != nil {
			os.Remove(i)
			continue
		}
		all = append(all, cached{log, st.ModTime()})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].at.Before(all[j].at) })
	for _, c := range all[:max(0, len(all)-maxCached)] {
		if c.log == keep {
			continue
		}
		os.Remove(indexPath(c.log))
		os.Remove(c.log)
	}
}
