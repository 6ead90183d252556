package audit

import (
	"context"
	"errors"
	"time"

	"github.com/transparency-dev/merkle/compact"
)

// Backend keeps the log. The embedded one is filelog (append-only segment
// files in the data directory); the PostgreSQL store is the other, shared by
// replicas. The conformance suite in audittest runs against both.
type Backend interface {
	Sequencer
	TreeStore
	CheckpointStore
	// Lead takes the integration lock: only its holder grows the tree, signs
	// checkpoints, relays admin events and exports. It returns a nil Lease
	// while another process holds it; the lock goes with Release or the
	// process.
	Lead(ctx context.Context) (Lease, error)
	// Query lists entries matching q, in index order, and returns the index
	// of the last entry it examined: the cursor for the next page.
	Query(ctx context.Context, q Query) ([]Stored, int64, error)
	// Cursor and SetCursor keep exporters' positions: the index of the next
	// entry to deliver.
	Cursor(ctx context.Context, name string) (int64, error)
	SetCursor(ctx context.Context, name string, next int64) error
	Close() error
}

// Sequencer stores entries in order.
type Sequencer interface {
	// Append gives the entries consecutive indexes after the last stored
	// one, sets each one's Index and Prev, and stores their canonical form
	// durably before it returns. It stores all of them or none.
	Append(ctx context.Context, entries []*Entry) error
	// Size is the number of entries stored.
	Size(ctx context.Context) (int64, error)
	// Read returns the canonical bytes of entries [from, to).
	Read(ctx context.Context, from, to int64) ([][]byte, error)
	// LeafHashes returns the leaf hashes of entries [from, to).
	LeafHashes(ctx context.Context, from, to int64) ([][]byte, error)
}

// TreeStore keeps the nodes of the Merkle tree over the entries, so that
// proofs are read, not recomputed.
type TreeStore interface {
	// TreeSize is the number of entries the stored tree covers.
	TreeSize(ctx context.Context) (int64, error)
	// StoreTree records the nodes completed by growing the tree from size
	// from to size to. It fails, storing nothing, when the stored tree is
	// not of size from: another leader has moved it.
	StoreTree(ctx context.Context, from, to int64, nodes []Node) error
	// Nodes returns the hashes of stored nodes.
	Nodes(ctx context.Context, ids []compact.NodeID) ([][]byte, error)
}

// Lease is a held integration lock.
type Lease interface {
	// Check reports whether the lock is still held: a lease whose
	// connection broke may have passed to another process.
	Check(ctx context.Context) error
	Release()
}

// Node is one stored tree node.
type Node struct {
	ID   compact.NodeID
	Hash []byte
}

// CheckpointStore keeps every signed checkpoint.
type CheckpointStore interface {
	AddCheckpoint(ctx context.Context, c StoredCheckpoint) error
	// Checkpoints lists checkpoints with Size >= fromSize, oldest first.
	Checkpoints(ctx context.Context, fromSize int64, limit int) ([]StoredCheckpoint, error)
	// LatestCheckpoint returns the newest; ErrNoCheckpoint when there is none.
	LatestCheckpoint(ctx context.Context) (StoredCheckpoint, error)
}

// StoredCheckpoint is a signed checkpoint as kept.
type StoredCheckpoint struct {
	Size   int64
	Signed []byte
	Time   time.Time
}

// ErrNoCheckpoint means no checkpoint has been made yet.
var ErrNoCheckpoint = errors.New("no checkpoint yet")

// ErrBroken means the backend failed in a way that may have left a write
// half done; it refuses every later append until it is opened again, which
// repairs it.
var ErrBroken = errors.New("audit log unusable until restarted")

// Query selects entries. Zero fields match everything.
type Query struct {
	Agent string
	// DecisionID selects a decision's entry.
	DecisionID string
	Kind       Kind
	Outcome    string
	Since      time.Time // inclusive
	Until      time.Time // exclusive
	// After is a paging cursor: only entries with a greater index.
	After int64
	Limit int
	// MaxScan bounds how many entries a backend without indexes reads for
	// one query; it returns what it found and where it stopped.
	MaxScan int
}

// Stored is an entry as read back: its canonical bytes and their meaning.
type Stored struct {
	Entry *Entry
	Data  []byte
}
