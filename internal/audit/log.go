package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
)

// Mode says when Append returns.
type Mode string

// Append modes.
const (
	// ModeSync: Append returns once the entry is durable. The default.
	ModeSync Mode = "sync"
	// ModeAsync: Append returns once the entry is queued in a bounded
	// buffer; a full buffer refuses the entry (and so the decision) rather
	// than drop it.
	ModeAsync Mode = "async"
)

// Config configures a Log.
type Config struct {
	Mode Mode
	// AsyncBuffer is the queue length in async mode. Default 10,000.
	AsyncBuffer int
	// CheckpointEvery and CheckpointInterval: a checkpoint is signed when
	// this many entries are new since the last one, or this long has passed
	// with any new entry. Defaults 1,000 and 1s.
	CheckpointEvery    int64
	CheckpointInterval time.Duration
	// Observer, when set, is told of every durable write: its entries,
	// its time, its failure (Warden's metrics).
	Observer interface {
		Committed(entries int, took time.Duration, err error)
	}
	Logger *slog.Logger
	Now    func() time.Time
}

// Errors Append returns besides the backend's.
var (
	ErrBufferFull = errors.New("audit buffer full")
	ErrClosed     = errors.New("audit log closed")
)

// Log is the audit log: concurrent appends go to the backend in batches
// (group commit, one sync for many), and the process holding the lead
// integrates them into the Merkle tree and signs checkpoints.
type Log struct {
	cfg     Config
	be      Backend
	signer  *CheckpointSigner
	log     *slog.Logger
	now     func() time.Time
	reqs    chan *appendReq
	closing chan struct{}
	done    chan struct{} // writer and integrator have stopped
	written chan struct{} // the writer has stopped
	wake    chan struct{}
	broken  atomic.Pointer[error]
	leading atomic.Bool
	once    sync.Once

	watchMu  sync.Mutex
	watchers []chan<- struct{}

	mu       sync.Mutex // guards the fields below, owned by the integrator
	tree     *compact.Range
	lastCP   StoredCheckpoint
	lastCPAt time.Time
	// lastRoot is lastCP's root once known: from its signature checked
	// when it was loaded, or as this log signed it.
	lastRoot []byte
}

type appendReq struct {
	e    *Entry
	done chan error // nil in async mode
}

const maxBatch = 1024

// Open starts a log over be. The writer runs until Close; the integrator
// takes the lead whenever it can.
func Open(cfg Config, be Backend, signer *CheckpointSigner) (*Log, error) {
	if cfg.Mode == "" {
		cfg.Mode = ModeSync
	}
	if cfg.Mode != ModeSync && cfg.Mode != ModeAsync {
		return nil, fmt.Errorf("audit: mode %q: want sync or async", cfg.Mode)
	}
	if cfg.AsyncBuffer <= 0 {
		cfg.AsyncBuffer = 10_000
	}
	if cfg.CheckpointEvery <= 0 {
		cfg.CheckpointEvery = 1000
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = time.Second
	}
	if signer == nil {
		return nil, errors.New("audit: a checkpoint signer is required")
	}
	queue := maxBatch
	if cfg.Mode == ModeAsync {
		queue = cfg.AsyncBuffer
	}
	l := &Log{cfg: cfg, be: be, signer: signer, log: orDiscard(cfg.Logger), now: orNow(cfg.Now),
		reqs: make(chan *appendReq, queue), closing: make(chan struct{}), done: make(chan struct{}),
		written: make(chan struct{}), wake: make(chan struct{}, 1)}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); defer close(l.written); l.write() }()
	go func() { defer wg.Done(); l.integrate() }()
	go func() { wg.Wait(); close(l.done) }()
	return l, nil
}

// Append records e. In sync mode it returns e's index once e is durable;
// in async mode it returns -1 once e is queued. Any error means e is not
// recorded, and the caller must treat the action as refused.
func (l *Log) Append(ctx context.Context, e *Entry) (int64, error) {
	return l.append(ctx, e, l.cfg.Mode == ModeAsync)
}

// AppendDurable records e and returns once it is durable, whatever the mode.
func (l *Log) AppendDurable(ctx context.Context, e *Entry) (int64, error) {
	return l.append(ctx, e, false)
}

func (l *Log) append(ctx context.Context, e *Entry, async bool) (int64, error) {
	if err := l.broken.Load(); err != nil {
		return -1, *err
	}
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	e.Time = e.Time.UTC()
	// Canonicalise the nested JSON here, in the caller's goroutine, and refuse
	// now what the backend would refuse later; the writer then only encodes.
	// Prepare scans each nested value once, and refuses what is not JSON.
	if _, err := e.leafSize(); err != nil {
		return -1, err
	}
	if err := e.Validate(); err != nil {
		return -1, err
	}
	r := &appendReq{e: e}
	if async {
		select {
		case <-l.closing:
			return -1, ErrClosed
		default:
		}
		select {
		case l.reqs <- r:
			return -1, nil
		default:
			return -1, ErrBufferFull
		}
	}
	r.done = make(chan error, 1)
	select {
	case <-l.closing:
		return -1, ErrClosed
	case <-ctx.Done():
		return -1, ctx.Err()
	case l.reqs <- r:
	}
	// Once queued, the entry may be written: wait for the outcome.
	select {
	case err := <-r.done:
		if err != nil {
			return -1, err
		}
		return e.Index, nil
	case <-l.done:
		select {
		case err := <-r.done:
			if err != nil {
				return -1, err
			}
			return e.Index, nil
		default:
			return -1, ErrClosed
		}
	}
}

// write is the group committer: it takes whatever is queued, up to
// maxBatch, and hands it to the backend as one durable write.
func (l *Log) write() {
	batch := make([]*appendReq, 0, maxBatch)
	entries := make([]*Entry, 0, maxBatch)
	for {
		var first *appendReq
		select {
		case first = <-l.reqs:
		case <-l.closing:
			// Drain what was accepted before closing, then stop.
			select {
			case first = <-l.reqs:
			default:
				return
			}
		}
		batch = append(batch[:0], first)
		// Let appenders woken by the last commit queue up before taking the
		// batch: otherwise batches alternate between those that made it and
		// those that did not, and each fsync serves half as many.
		runtime.Gosched()
	drain:
		for len(batch) < maxBatch {
			select {
			case r := <-l.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		entries = entries[:0]
		for _, r := range batch {
			entries = append(entries, r.e)
		}
		err := l.commit(entries)
		for _, r := range batch {
			if r.done != nil {
				r.done <- err
			}
		}
		if err != nil && l.cfg.Mode == ModeAsync {
			l.log.Error("audit: entries accepted in async mode were lost", "count", len(batch), "err", err)
		}
		select {
		case l.wake <- struct{}{}:
		default:
		}
		if err == nil {
			l.notifyWatchers()
		}
	}
}

// Watch has l signal ch, without blocking, after each batch of entries it
// commits: a follower of the log learns of this process's entries without
// waiting for its next poll.
func (l *Log) Watch(ch chan<- struct{}) {
	l.watchMu.Lock()
	defer l.watchMu.Unlock()
	l.watchers = append(l.watchers, ch)
}

func (l *Log) notifyWatchers() {
	l.watchMu.Lock()
	defer l.watchMu.Unlock()
	for _, ch := range l.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (l *Log) commit(entries []*Entry) error {
	if err := l.broken.Load(); err != nil {
		return *err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	err := l.be.Append(ctx, entries)
	if o := l.cfg.Observer; o != nil {
		o.Committed(len(entries), time.Since(start), err)
	}
	if err != nil {
		err = fmt.Errorf("audit: append: %w", err)
		if errors.Is(err, ErrBroken) {
			l.broken.Store(&err)
		}
		l.log.Error("audit append failed; the entries are refused", "count", len(entries), "err", err)
	}
	return err
}

// integrateEvery is the least time between two integrations woken by
// commits.
const integrateEvery = 5 * time.Millisecond

// integrate grows the Merkle tree over new entries and signs checkpoints,
// while this process holds the lead.
func (l *Log) integrate() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var lease Lease
	drop := func() {
		l.leading.Store(false)
		lease.Release()
		lease = nil
	}
	defer func() {
		if lease != nil {
			drop()
		}
	}()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	var grown time.Time
	for {
		closing := false
		select {
		case <-l.closing:
			// Integrate and sign what the writer commits before it stops.
			<-l.written
			closing = true
		case <-l.wake:
			// Under load, commits come faster than is worth growing the
			// tree for: every write of its nodes is a system call per
			// level. Let a few gather first.
			if wait := integrateEvery - time.Since(grown); wait > 0 {
				select {
				case <-l.closing:
					<-l.written
					closing = true
				case <-time.After(wait):
				}
			}
		case <-tick.C:
		}
		grown = time.Now()
		if lease != nil {
			// Still the leader? A broken lock connection may have handed the
			// lock to another replica; two leaders would sign and export twice.
			if err := lease.Check(ctx); err != nil {
				l.log.Warn("audit: the lead is lost", "err", err)
				drop()
			}
		}
		if lease == nil {
			le, err := l.be.Lead(ctx)
			if err != nil {
				l.log.Warn("audit: taking the lead failed", "err", err)
			}
			if le != nil {
				lease = le
				if err := l.loadTree(ctx); err != nil {
					l.log.Error("audit: loading the tree failed", "err", err)
					drop()
				} else {
					l.leading.Store(true)
				}
			}
		}
		if lease != nil {
			if err := l.grow(ctx, closing); err != nil {
				l.log.Error("audit: integrating entries failed", "err", err)
				// Start again from what is stored; the lead may be gone.
				drop()
			}
		}
		if closing {
			return
		}
	}
}

// loadTree rebuilds the compact range at the stored tree size.
func (l *Log) loadTree(ctx context.Context) error {
	size, err := l.be.TreeSize(ctx)
	if err != nil {
		return err
	}
	ids := compact.RangeNodes(0, uint64(size), nil)
	hashes, err := l.be.Nodes(ctx, ids)
	if err != nil {
		return err
	}
	f := compact.RangeFactory{Hash: NodeHash}
	r, err := f.NewRange(0, uint64(size), hashes)
	if err != nil {
		return err
	}
	cp, err := l.be.LatestCheckpoint(ctx)
	if err != nil && !errors.Is(err, ErrNoCheckpoint) {
		return err
	}
	l.mu.Lock()
	l.tree, l.lastCP, l.lastCPAt, l.lastRoot = r, cp, l.now(), nil
	l.mu.Unlock()
	return nil
}

// grow integrates every stored entry beyond the tree, then signs a
// checkpoint if one is due (always, when final and anything is new).
func (l *Log) grow(ctx context.Context, final bool) error {
	size, err := l.be.Size(ctx)
	if err != nil {
		return err
	}
	l.mu.Lock()
	tree := l.tree
	l.mu.Unlock()
	for from := int64(tree.End()); from < size; {
		to := min(from+4096, size)
		leaves, err := l.be.LeafHashes(ctx, from, to)
		if err != nil {
			return err
		}
		var nodes []Node
		visit := func(id compact.NodeID, hash []byte) {
			nodes = append(nodes, Node{ID: id, Hash: hash})
		}
		for _, h := range leaves {
			if err := tree.Append(h, visit); err != nil {
				return err
			}
		}
		if err := l.be.StoreTree(ctx, from, to, nodes); err != nil {
			return err
		}
		from = to
	}
	return l.maybeCheckpoint(ctx, tree, final)
}

func (l *Log) maybeCheckpoint(ctx context.Context, tree *compact.Range, final bool) error {
	size := int64(tree.End())
	l.mu.Lock()
	last, lastAt, lastRoot := l.lastCP, l.lastCPAt, l.lastRoot
	l.mu.Unlock()
	if size == last.Size && last.Signed != nil {
		return nil
	}
	due := size-last.Size >= l.cfg.CheckpointEvery || l.now().Sub(lastAt) >= l.cfg.CheckpointInterval || final
	if !due {
		return nil
	}
	root, err := tree.GetRootHash(nil)
	if err != nil {
		return err
	}
	if root == nil {
		root = hasher.EmptyRoot()
	}
	if err := l.extends(ctx, last, lastRoot, size, root); err != nil {
		l.log.Error("audit: refusing to sign a checkpoint: the log does not extend its own latest one; its files were changed (restore them, or compare with a witness)", "err", err)
		return err
	}
	signed, err := l.signer.Sign(size, root)
	if err != nil {
		return err
	}
	cp := StoredCheckpoint{Size: size, Signed: signed, Time: l.now().UTC()}
	if err := l.be.AddCheckpoint(ctx, cp); err != nil {
		return err
	}
	l.mu.Lock()
	l.lastCP, l.lastCPAt, l.lastRoot = cp, l.now(), root
	l.mu.Unlock()
	return nil
}

// extends checks, before a checkpoint of size and root is signed, that it
// extends the latest one: a log whose tree was rebuilt from altered
// entries (its tree files removed, a cached segment replaced) is not
// signed over, whatever the entries say.
func (l *Log) extends(ctx context.Context, last StoredCheckpoint, lastRoot []byte, size int64, root []byte) error {
	if last.Signed == nil {
		return nil
	}
	prev := Checkpoint{Size: last.Size, Root: lastRoot}
	if lastRoot == nil { // loaded, not signed here: its signature is checked once
		cv, err := NewCheckpointVerifier(l.signer.VerifierKey())
		if err != nil {
			return err
		}
		if prev, err = cv.Parse(last.Signed); err != nil {
			return fmt.Errorf("the latest checkpoint does not verify: %w", err)
		}
		l.mu.Lock()
		if l.lastCP.Size == last.Size {
			l.lastRoot = prev.Root
		}
		l.mu.Unlock()
	}
	switch {
	case prev.Size > size:
		return fmt.Errorf("the latest checkpoint covers %d entries, the tree %d", prev.Size, size)
	case prev.Size == 0:
		return nil
	case prev.Size == size:
		if !bytes.Equal(prev.Root, root) {
			return fmt.Errorf("the tree of %d entries has another root than its checkpoint", size)
		}
		return nil
	}
	hashes, err := l.ConsistencyProof(ctx, prev.Size, size)
	if err != nil {
		return err
	}
	if err := proof.VerifyConsistency(hasher, uint64(prev.Size), uint64(size), hashes, prev.Root, root); err != nil {
		return fmt.Errorf("the tree of %d entries does not extend the checkpoint of %d: %w", size, prev.Size, err)
	}
	return nil
}

// Close stops taking entries, writes what was queued, integrates it, signs
// a last checkpoint, and gives up the lead.
func (l *Log) Close() error {
	l.once.Do(func() { close(l.closing) })
	<-l.done
	return nil
}

// Queued is the number of entries waiting for the group committer.
func (l *Log) Queued() int { return len(l.reqs) }

// Backend returns the log's backend, for components that keep their own
// state beside the log (exporters' cursors).
func (l *Log) Backend() Backend { return l.be }

// Leading reports whether this process holds the lead: integrates the tree,
// signs checkpoints and relays admin events.
func (l *Log) Leading() bool { return l.leading.Load() }

// Checkpoint returns the latest signed checkpoint.
func (l *Log) Checkpoint(ctx context.Context) (StoredCheckpoint, error) {
	return l.be.LatestCheckpoint(ctx)
}

// Checkpoints lists stored checkpoints from fromSize on, oldest first.
func (l *Log) Checkpoints(ctx context.Context, fromSize int64, limit int) ([]StoredCheckpoint, error) {
	return l.be.Checkpoints(ctx, fromSize, limit)
}

// VerifierKey is the public key of the log's checkpoints.
func (l *Log) VerifierKey() string { return l.signer.VerifierKey() }

// Origin is the log's name in its checkpoints.
func (l *Log) Origin() string { return l.signer.Origin() }

// ErrBadRange is returned for proofs about sizes or indexes the tree does not have.
var ErrBadRange = errors.New("no such index or tree size")

// InclusionProof proves that entry index is in the tree of the given size.
// It also returns the entry's bytes.
func (l *Log) InclusionProof(ctx context.Context, index, size int64) ([][]byte, []byte, error) {
	tree, err := l.be.TreeSize(ctx)
	if err != nil {
		return nil, nil, err
	}
	if index < 0 || size <= index || size > tree {
		return nil, nil, fmt.Errorf("%w: index %d, size %d, the tree has %d entries", ErrBadRange, index, size, tree)
	}
	nodes, err := proof.Inclusion(uint64(index), uint64(size))
	if err != nil {
		return nil, nil, err
	}
	p, err := l.rehash(ctx, nodes)
	if err != nil {
		return nil, nil, err
	}
	data, err := l.be.Read(ctx, index, index+1)
	if err != nil {
		return nil, nil, err
	}
	return p, data[0], nil
}

// ConsistencyProof proves that the tree of size from is a prefix of the tree of size to.
func (l *Log) ConsistencyProof(ctx context.Context, from, to int64) ([][]byte, error) {
	tree, err := l.be.TreeSize(ctx)
	if err != nil {
		return nil, err
	}
	if from < 0 || to < from || to > tree {
		return nil, fmt.Errorf("%w: from %d, to %d, the tree has %d entries", ErrBadRange, from, to, tree)
	}
	nodes, err := proof.Consistency(uint64(from), uint64(to))
	if err != nil {
		return nil, err
	}
	return l.rehash(ctx, nodes)
}

func (l *Log) rehash(ctx context.Context, nodes proof.Nodes) ([][]byte, error) {
	hashes, err := l.be.Nodes(ctx, nodes.IDs)
	if err != nil {
		return nil, err
	}
	return nodes.Rehash(hashes, NodeHash)
}

// TreeSize is the number of entries integrated into the stored tree.
func (l *Log) TreeSize(ctx context.Context) (int64, error) { return l.be.TreeSize(ctx) }

// Size is the number of entries stored, integrated or not.
func (l *Log) Size(ctx context.Context) (int64, error) { return l.be.Size(ctx) }

// Query lists entries; see Backend.Query.
func (l *Log) Query(ctx context.Context, q Query) ([]Stored, int64, error) { return l.be.Query(ctx, q) }

// Read returns the canonical bytes of entries [from, to).
func (l *Log) Read(ctx context.Context, from, to int64) ([][]byte, error) {
	return l.be.Read(ctx, from, to)
}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

func orNow(f func() time.Time) func() time.Time {
	if f == nil {
		return time.Now
	}
	return f
}
