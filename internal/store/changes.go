package store

import (
	"context"
	"sync"
)

// ChangeKind says what changed.
type ChangeKind string

// Kinds of change announced on the feed.
const (
	ChangeAgent        ChangeKind = "agent"         // Key is the agent id
	ChangeTokenRevoked ChangeKind = "token_revoked" // Key is the jti
	ChangeSigningKeys  ChangeKind = "signing_keys"
	// ChangePolicy: the active or shadow policy version changed.
	ChangePolicy ChangeKind = "policy"
	// ChangeEnforcementPoints: an enforcement point was registered or revoked.
	ChangeEnforcementPoints ChangeKind = "enforcement_points"
	// ChangeTaint: an agent's taints changed; Key is the agent id.
	ChangeTaint ChangeKind = "taint"
	// ChangeAudit: entries were appended to the shared audit log (no key).
	// Stores that carry it hand it to the log's follower alone, never to
	// the feed's subscribers: it comes as often as the log commits.
	ChangeAudit ChangeKind = "audit"
	// ChangeResync means changes may have been missed: reload everything.
	ChangeResync ChangeKind = "resync"
)

// Change is one announcement on the change feed.
type Change struct {
	Kind ChangeKind `json:"kind"`
	Key  string     `json:"key,omitempty"`
}

// ChangeFeed announces committed changes that matter for safety (status,
// revocation, keys) to every process sharing the store.
type ChangeFeed interface {
	// Subscribe delivers changes committed by any process until ctx ends.
	// A subscriber that falls behind receives ChangeResync.
	Subscribe(ctx context.Context) <-chan Change
	// FeedHealthy reports whether the feed is currently connected; while it is
	// not, changes from other processes may be missed.
	FeedHealthy() bool
}

// Broadcaster fans changes out to in-process subscribers. Backends use it to
// implement ChangeFeed.
type Broadcaster struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

type subscriber struct {
	ch chan Change
}

const subscriberBuffer = 256

// Subscribe registers a subscriber until ctx ends.
func (b *Broadcaster) Subscribe(ctx context.Context) <-chan Change {
	s := &subscriber{ch: make(chan Change, subscriberBuffer)}
	b.mu.Lock()
	if b.subs == nil {
		b.subs = make(map[*subscriber]struct{})
	}
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	go func() {
		<-ctx.Done()
		b.mu.Lock()
		delete(b.subs, s)
		close(s.ch)
		b.mu.Unlock()
	}()
	return s.ch
}

// Publish delivers c to every subscriber without blocking. When a
// subscriber's buffer is full, what it holds is replaced by one
// ChangeResync, there and then: a resync supersedes every queued change,
// and the subscriber learns of the loss at its very next read.
func (b *Broadcaster) Publish(c Change) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		select {
		case s.ch <- c:
			continue
		default:
		}
		for drained := false; !drained; {
			select {
			case <-s.ch:
			default:
				drained = true
			}
		}
		s.ch <- Change{Kind: ChangeResync} // room now: only Publish sends, under b.mu
	}
}
