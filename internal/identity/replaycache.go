package identity

import (
	"container/heap"
	"sync"
	"time"
)

// ReplayCache remembers single-use values (DPoP proof ids) until they
// expire. It is bounded, in all and per owner (the key that signed the
// proofs): when full of unexpired values it refuses new ones rather than
// forgetting one that could then be replayed, and one owner reaching its
// share does not lock the others out.
type ReplayCache struct {
	mu       sync.Mutex
	max      int
	perOwner int
	seen     map[replayKey]int64 // -> expiry, unix nanos
	owners   map[string]int      // owner -> live values
	exp      expiryHeap
}

type replayKey struct{ owner, value string }

// NewReplayCache makes a cache holding at most max values, and at most
// perOwner for any one owner.
func NewReplayCache(max, perOwner int) *ReplayCache {
	return &ReplayCache{max: max, perOwner: perOwner, seen: make(map[replayKey]int64), owners: make(map[string]int)}
}

// Use records value for no particular owner.
func (c *ReplayCache) Use(value string, expires, now time.Time) error {
	return c.UseFor("", value, expires, now)
}

// UseFor records value for owner until expires. It returns ErrReplay when
// the value is already recorded and unexpired, and ErrReplayCacheIsFull when
// there is no room, in all or in the owner's share.
func (c *ReplayCache) UseFor(owner, value string, expires, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := now.UnixNano()
	k := replayKey{owner, value}
	if e, ok := c.seen[k]; ok && e >= n {
		return ErrReplay
	}
	for len(c.exp) > 0 && c.exp[0].at < n {
		it := heap.Pop(&c.exp).(expiryItem)
		if e, ok := c.seen[it.key]; ok && e == it.at {
			delete(c.seen, it.key)
			if c.owners[it.key.owner]--; c.owners[it.key.owner] <= 0 {
				delete(c.owners, it.key.owner)
			}
		}
	}
	if len(c.seen) >= c.max || c.owners[owner] >= c.perOwner {
		return ErrReplayCacheIsFull
	}
	if _, ok := c.seen[k]; !ok {
		c.owners[owner]++
	}
	c.seen[k] = expires.UnixNano()
	heap.Push(&c.exp, expiryItem{key: k, at: expires.UnixNano()})
	return nil
}

// Len returns how many values are remembered.
func (c *ReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

type expiryItem struct {
	key replayKey
	at  int64
}

type expiryHeap []expiryItem

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryItem)) }
func (h *expiryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}
