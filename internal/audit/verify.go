package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"

	"github.com/transparency-dev/merkle/compact"
)

// Item is one element of a log as read for verification: an entry's
// canonical bytes, or a signed checkpoint, which follows the last entry it
// covers.
type Item struct {
	Checkpoint bool
	Data       []byte
}

// Source yields a log's items in order; io.EOF ends it.
type Source interface {
	Next() (Item, error)
}

// Report is the outcome of a verification.
type Report struct {
	Entries     int64 `json:"entries"`
	Checkpoints int   `json:"checkpoints"`
	// Latest is the newest checkpoint that verified, if any, and its note.
	Latest       *Checkpoint `json:"-"`
	LatestSigned []byte      `json:"-"`
	// Uncovered counts entries after the latest checkpoint: intact as far as
	// the chain shows, but not yet committed to by a signature.
	Uncovered int64 `json:"uncovered"`
	// FirstBad is the first index that is not what the log committed to,
	// or -1. When only a checkpoint can tell (the history was rewritten with
	// care), it is the first index after the last checkpoint that matched.
	FirstBad int64  `json:"first_bad"`
	Problem  string `json:"problem,omitempty"`
}

// OK reports whether the log verified.
func (r *Report) OK() bool { return r.FirstBad < 0 && r.Problem == "" }

// Verify reads a whole log from src and checks, entry by entry, that the
// indexes run 0, 1, 2, ... without gaps or repeats, that every entry's prev
// is the leaf hash of the entry before it, and that every checkpoint is
// signed by cv and commits to exactly the tree of the entries before it. A
// trusted checkpoint from an earlier verification (or nil) must also be
// matched: a log that no longer reaches it, or disagrees with it, was
// rewound or rewritten. A log without any checkpoint does not verify.
//
// It stops at the first problem. An I/O error from src is returned as an error.
func Verify(src Source, cv *CheckpointVerifier, trusted *Checkpoint) (*Report, error) {
	v := &verifier{cv: cv, trusted: trusted, report: &Report{FirstBad: -1}}
	v.tree = rangeFactory.NewEmptyRange(0)
	const batch = 4096
	items := make([]Item, 0, batch)
	for {
		items = items[:0]
		var srcErr error
		for len(items) < batch {
			it, err := src.Next()
			if err != nil {
				srcErr = err
				break
			}
			items = append(items, it)
		}
		if !v.process(items) {
			return v.report, nil
		}
		if errors.Is(srcErr, io.EOF) {
			break
		}
		if srcErr != nil {
			return nil, srcErr
		}
	}
	v.finish()
	return v.report, nil
}

type verifier struct {
	cv       *CheckpointVerifier
	trusted  *Checkpoint
	report   *Report
	tree     *compact.Range
	next     int64
	prevLeaf []byte
	lastGood int64 // size of the last checkpoint that matched
	// recent holds the leaf hashes of the newest entries (entry i at
	// i % len(recent)), to tell a copy of an earlier entry from a rival.
	recent [recentLeaves][]byte
	// mismatch is a checkpoint whose root the entries did not match. The
	// verdict waits for the next entry: when its prev, put in place of the
	// last entry the checkpoint covers, gives the checkpoint's root, that
	// entry alone was changed, and is named.
	mismatch *mismatch
	// before is the tree without its newest leaf, kept when that leaf may
	// be the last a checkpoint covers (see mismatch).
	before *compact.Range
}

const recentLeaves = 4096

var rangeFactory = &compact.RangeFactory{Hash: NodeHash}

type mismatch struct {
	size int64
	root []byte
	what string // "signed checkpoint" or "trusted checkpoint"
}

// parsed is what the parallel stage learns of one entry.
type parsed struct {
	index int64
	prev  string
	leaf  []byte
	err   error
}

func (v *verifier) process(items []Item) bool {
	// Parsing and hashing are independent per entry: spread them over the CPUs.
	ps := make([]parsed, len(items))
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(items); i += workers {
				if !items[i].Checkpoint {
					ps[i] = parseEntry(items[i].Data)
				}
			}
		}(w)
	}
	wg.Wait()
	for i, it := range items {
		if it.Checkpoint {
			if !v.checkpoint(it.Data) {
				return false
			}
			continue
		}
		// Keep the tree as it was before this entry when a checkpoint may
		// end on it: one follows, or the batch ends here.
		ends := i+1 == len(items) || items[i+1].Checkpoint || v.trusted != nil && v.next+1 == v.trusted.Size
		if !v.entry(ps[i], ends) {
			return false
		}
	}
	return true
}

func parseEntry(data []byte) parsed {
	var head struct {
		Index *int64 `json:"index"`
		Prev  string `json:"prev"`
	}
	if len(data) > MaxEntrySize || json.Unmarshal(data, &head) != nil || head.Index == nil {
		return parsed{err: errors.New("not an entry")}
	}
	return parsed{index: *head.Index, prev: head.Prev, leaf: LeafHash(data)}
}

func (v *verifier) fail(first int64, format string, a ...any) bool {
	v.report.FirstBad = first
	v.report.Problem = fmt.Sprintf(format, a...)
	return false
}

func (v *verifier) entry(p parsed, keepBefore bool) bool {
	i := v.next
	if m := v.mismatch; m != nil {
		if p.err == nil && p.index == i && v.onlyLastChanged(p.prev, m) {
			return v.fail(i-1, "entry %d does not match the %s of size %d, but the hash entry %d records of it does: entry %d was modified", i-1, m.what, m.size, i, i-1)
		}
		return v.failMismatch()
	}
	switch {
	case p.err != nil:
		return v.fail(i, "entry %d is not a well-formed entry: modified", i)
	case p.index > i:
		return v.fail(i, "entry %d is missing (the next entry says %d): deleted, or entries reordered", i, p.index)
	case p.index < 0:
		return v.fail(i, "entry %d says it is entry %d: modified", i, p.index)
	case p.index < i:
		if i-p.index <= recentLeaves && bytes.Equal(v.recent[p.index%recentLeaves], p.leaf) {
			return v.fail(i, "entry %d appears again where entry %d belongs: a duplicate was inserted", p.index, i)
		}
		if p.index < v.lastGood {
			// The first of the two is under a checkpoint that verified.
			return v.fail(i, "entry %d, already under the checkpoint of size %d, appears again where entry %d belongs: inserted", p.index, v.lastGood, i)
		}
		// Two entries claim the same place; the first of them is where the
		// log went wrong.
		return v.fail(p.index, "entry %d appears again where entry %d belongs: inserted, duplicated or reordered", p.index, i)
	case i > 0 && p.prev != hex.EncodeToString(v.prevLeaf):
		return v.fail(i-1, "entry %d records a hash of entry %d that does not match it: entry %d was modified", i, i-1, i-1)
	case i == 0 && p.prev != "":
		return v.fail(0, "entry 0 records a predecessor: modified")
	}
	if keepBefore {
		v.before = cloneRange(v.tree)
	}
	if err := v.tree.Append(p.leaf, nil); err != nil {
		return v.fail(i, "entry %d: %v", i, err)
	}
	v.prevLeaf = p.leaf
	v.recent[i%recentLeaves] = p.leaf
	v.next++
	v.report.Entries = v.next
	if t := v.trusted; t != nil && v.next == t.Size {
		return v.matchRoot(t.Root, "trusted checkpoint")
	}
	return true
}

// matchRoot compares the tree of the entries so far with a checkpoint's
// root. A mismatch is held until the next item (see verifier.mismatch).
func (v *verifier) matchRoot(want []byte, what string) bool {
	root, err := v.root()
	if err != nil {
		return v.fail(v.next, "%v", err)
	}
	if !bytes.Equal(root, want) {
		v.mismatch = &mismatch{size: v.next, root: want, what: what}
	}
	return true
}

// onlyLastChanged reports whether the tree with prev (a hex leaf hash) in
// place of its newest leaf has the root m expected: then the entries before
// are as committed, and the newest entry alone was changed.
func (v *verifier) onlyLastChanged(prev string, m *mismatch) bool {
	leaf, err := hex.DecodeString(prev)
	if err != nil || len(leaf) != sha256.Size || v.before == nil || int64(v.before.End())+1 != m.size {
		return false
	}
	r := cloneRange(v.before)
	if r.Append(leaf, nil) != nil {
		return false
	}
	root, err := r.GetRootHash(nil)
	return err == nil && bytes.Equal(root, m.root)
}

func cloneRange(r *compact.Range) *compact.Range {
	c, err := rangeFactory.NewRange(r.Begin(), r.End(), slices.Clone(r.Hashes()))
	if err != nil {
		panic(err) // the hashes of a valid range make a valid range
	}
	return c
}

func (v *verifier) failMismatch() bool {
	m := v.mismatch
	return v.fail(v.lastGood, "entries %d to %d do not match the %s of size %d: history rewritten", v.lastGood, m.size-1, m.what, m.size)
}

func (v *verifier) checkpoint(signed []byte) bool {
	c, err := v.cv.Parse(signed)
	if v.mismatch != nil && (err != nil || c.Size != v.next) {
		return v.failMismatch()
	}
	if err != nil {
		if v.next == 0 {
			return v.fail(0, "the checkpoint before the first entry does not verify (%v): forged or altered", err)
		}
		return v.fail(v.next, "the checkpoint after entry %d does not verify (%v): forged or altered", v.next-1, err)
	}
	if c.Size != v.next {
		if c.Size > v.next {
			return v.fail(v.next, "a checkpoint covers %d entries where only %d precede it: entries from %d on were removed", c.Size, v.next, v.next)
		}
		return v.fail(c.Size, "a checkpoint of size %d sits after entry %d: entries were inserted after index %d, or the checkpoint moved", c.Size, v.next-1, c.Size-1)
	}
	if !v.matchRoot(c.Root, "signed checkpoint") {
		return false
	}
	if v.mismatch != nil {
		return true // judged at the next item
	}
	v.lastGood = c.Size
	v.report.Checkpoints++
	v.report.Latest = &c
	v.report.LatestSigned = signed
	return true
}

func (v *verifier) root() ([]byte, error) {
	r, err := v.tree.GetRootHash(nil)
	if err != nil {
		return nil, err
	}
	if r == nil {
		r = hasher.EmptyRoot()
	}
	return r, nil
}

func (v *verifier) finish() {
	r := v.report
	if v.mismatch != nil {
		v.failMismatch()
		return
	}
	if t := v.trusted; t != nil {
		switch {
		case v.next < t.Size:
			v.fail(v.next, "the log has %d entries but the trusted checkpoint covers %d: entries from %d on were removed (rewound)", v.next, t.Size, v.next)
			return
		case r.Latest == nil || r.Latest.Size < t.Size:
			v.fail(v.lastGood, "the latest checkpoint is older than the trusted one (size %d): rewound", t.Size)
			return
		}
	}
	if r.Latest == nil {
		v.fail(0, "no signed checkpoint: nothing commits to these %d entries", v.next)
		return
	}
	r.Uncovered = v.next - r.Latest.Size
}
