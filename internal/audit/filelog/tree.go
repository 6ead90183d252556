package filelog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/compact"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/durable"
)

// The tree's nodes are written without a sync each time; they can always be
// computed again from the entries. tree.state records the size up to which
// they have been synced, just before each checkpoint; on open, nodes past it
// are dropped and the log integrates those entries again.

func (l *Log) levelFile(level uint) (*os.File, error) {
	for uint(len(l.levels)) <= level {
		l.levels = append(l.levels, nil)
	}
	if f := l.levels[level]; f != nil {
		return f, nil
	}
	f, err := os.OpenFile(filepath.Join(l.dir, fmt.Sprintf("tree-%02d.bin", level)), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	l.levels[level] = f
	return f, nil
}

// readTreeState returns the size up to which the tree's nodes were synced.
func (l *Log) readTreeState() (int64, error) {
	b, err := os.ReadFile(filepath.Join(l.dir, "tree.state"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("audit log: %w", err)
	}
	size, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || size < 0 {
		return 0, fmt.Errorf("%w: tree.state", ErrCorrupt)
	}
	return size, nil
}

func (l *Log) loadTree(size int64) error {
	if size > l.size {
		return fmt.Errorf("%w: the tree covers %d entries but only %d are stored: entries were lost", ErrCorrupt, size, l.size)
	}
	if cp := l.latest; cp != nil && cp.Size > l.size {
		return fmt.Errorf("%w: a checkpoint covers %d entries but only %d are stored: entries were lost", ErrCorrupt, cp.Size, l.size)
	}
	// Keep exactly the nodes of the tree at size; later ones may be half written.
	for level := uint(0); level < 64; level++ {
		name := filepath.Join(l.dir, fmt.Sprintf("tree-%02d.bin", level))
		keep := (size >> level) * hashSize
		if _, err := os.Stat(name); errors.Is(err, os.ErrNotExist) {
			if keep == 0 {
				continue
			}
			return fmt.Errorf("%w: %s is missing", ErrCorrupt, filepath.Base(name))
		}
		f, err := l.levelFile(level)
		if err != nil {
			return err
		}
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if st.Size() < keep {
			return fmt.Errorf("%w: %s is shorter than tree.state says", ErrCorrupt, filepath.Base(name))
		}
		if err := f.Truncate(keep); err != nil {
			return err
		}
	}
	l.treeSize = size
	return nil
}

// TreeSize implements audit.TreeStore.
func (l *Log) TreeSize(ctx context.Context) (int64, error) {
	l.treeMu.RLock()
	defer l.treeMu.RUnlock()
	return l.treeSize, nil
}

// StoreTree implements audit.TreeStore.
func (l *Log) StoreTree(ctx context.Context, from, size int64, nodes []audit.Node) error {
	l.treeMu.Lock()
	defer l.treeMu.Unlock()
	if l.treeSize != from {
		return fmt.Errorf("audit log: the tree has %d entries, not %d", l.treeSize, from)
	}
	// Nodes of one level come in index order, mostly consecutive: write each
	// consecutive run at once.
	sort.SliceStable(nodes, func(i, j int) bool { return nodes[i].ID.Level < nodes[j].ID.Level })
	for i := 0; i < len(nodes); {
		j := i + 1
		for j < len(nodes) && nodes[j].ID.Level == nodes[i].ID.Level && nodes[j].ID.Index == nodes[j-1].ID.Index+1 {
			j++
		}
		f, err := l.levelFile(nodes[i].ID.Level)
		if err != nil {
			return err
		}
		run := make([]byte, 0, (j-i)*hashSize)
		for _, n := range nodes[i:j] {
			run = append(run, n.Hash...)
		}
		if _, err := f.WriteAt(run, int64(nodes[i].ID.Index)*hashSize); err != nil {
			return fmt.Errorf("audit log: store tree: %w", err)
		}
		i = j
	}
	l.treeSize = size
	l.mu.Lock()
	if size > l.leafBase {
		drop := min(size-l.leafBase, int64(len(l.leaves)))
		l.leaves, l.leafBase = l.leaves[drop:], l.leafBase+drop
	}
	l.mu.Unlock()
	return nil
}

// Nodes implements audit.TreeStore.
func (l *Log) Nodes(ctx context.Context, ids []compact.NodeID) ([][]byte, error) {
	l.treeMu.Lock() // levelFile may open a file
	defer l.treeMu.Unlock()
	out := make([][]byte, len(ids))
	for i, id := range ids {
		if id.Index >= uint64(l.treeSize)>>id.Level {
			return nil, fmt.Errorf("audit log: node %d/%d is not in the tree of %d entries", id.Level, id.Index, l.treeSize)
		}
		f, err := l.levelFile(id.Level)
		if err != nil {
			return nil, err
		}
		h := make([]byte, hashSize)
		if _, err := f.ReadAt(h, int64(id.Index)*hashSize); err != nil {
			return nil, fmt.Errorf("audit log: node %d/%d: %w", id.Level, id.Index, err)
		}
		out[i] = h
	}
	return out, nil
}

// treeSyncEvery is how often the tree's nodes are made durable. Not at
// every checkpoint: that was a sync of every level's file, and of
// tree.state, several times a second, on the disk that durable appends
// wait for. The tree can always be grown again from the entries, which are
// durable before they are acknowledged: after a crash the log regrows it
// from the size tree.state records, and before its next checkpoint checks
// that it still extends the latest one.
const treeSyncEvery = 5 * time.Second

// maybeSyncTree syncs the tree when treeSyncEvery has passed since it
// last was.
func (l *Log) maybeSyncTree() error {
	l.treeMu.Lock()
	due := time.Since(l.treeSyncedAt) >= treeSyncEvery
	l.treeMu.Unlock()
	if !due {
		return nil
	}
	return l.syncTree()
}

// syncTree makes the stored nodes durable and records up to which size.
func (l *Log) syncTree() error {
	l.treeMu.Lock()
	defer l.treeMu.Unlock()
	l.treeSyncedAt = time.Now()
	for _, f := range l.levels {
		if f != nil {
			if err := durable.Datasync(f); err != nil {
				return err
			}
		}
	}
	return durable.WriteAtomic(l.dir, "tree.state", []byte(strconv.FormatInt(l.treeSize, 10)+"\n"))
}
