package identity

import (
	"container/heap"
	"sync"
	"time"
)

// ReplayCache remembers single-use values (DPoP proof ids) until they
// expire. It is bounded: when full of unexpired values it refuses new ones
// rather than forgetting one that could then be replayed.
type ReplayCache struct {
	mu   sync.Mutex
	max  int
	seen map[string]int64 // value -> expiry, unix nanos
	exp  expiryHeap
}

// NewReplayCache makes a cache holding at most max values.
func NewReplayCache(max int) *ReplayCache {
	return &ReplayCache{max: max, seen: make(map[string]int64)}
}

// Use records value until expires. It returns ErrReplay when the value is
// already recorded and unexpired, and ErrReplayCacheIsFull when there is no room.
func (c *ReplayCache) Use(value string, expires, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := now.UnixNano()
	if e, ok := c.seen[value]; ok && e >= n {
		return ErrReplay
	}
	for len(c.exp) > 0 && c.exp[0].at < n {
		it := heap.Pop(&c.exp).(expiryItem)
		if c.seen[it.value] == it.at {
			delete(c.seen, it.value)
		}
	}
	if len(c.seen) >= c.max {
		return ErrReplayCacheIsFull
	}
	c.seen[value] = expires.UnixNano()
	heap.Push(&c.exp, expiryItem{value: value, at: expires.UnixNano()})
	return nil
}

// Len returns how many values are remembered.
func (c *ReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

type expiryItem struct {
	value string
	at    int64
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
