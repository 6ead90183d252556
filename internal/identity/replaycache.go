package identity

import (
	"sync"
	"time"
)

// ReplayCache remembers single-use values (DPoP proof ids) until they
// expire, so that each is accepted once. It keeps, per value, a 64-bit hash
// of the owner (the key that signed the proof) and the value under a secret
// random seed, in a set, and the hash again in the bucket of the second its
// memory ends: about 48 bytes a value, where strings in a heap took about
// 144 (BenchmarkReplayMemory). A value is never forgotten before its expiry: when the cache holds
// Capacity live values it refuses new ones (ErrReplayCacheIsFull) instead.
//
// Two different values with the same hash would make the second look like a
// replay: a refusal, never an acceptance, and with four million values held
// a chance below one in a million million per proof. The seed is secret,
// so nobody outside the process can aim for a collision.
type ReplayCache struct {
	capacity int
	hash     keyHasher

	mu       sync.Mutex
	seen     map[uint64]struct{}
	expiring map[int64][]uint64 // unix second -> hashes remembered until its end
	swept    int64              // buckets of earlier seconds are gone
	peak     int                // most values held since seen was made
	spare    [][]uint64         // emptied buckets, for reuse
	refused  uint64             // values refused because the cache was full
}

// ReplayStats describe a replay cache.
type ReplayStats struct {
	// Remembered is how many values are held now; Capacity the most it holds.
	Remembered, Capacity int
	// RefusedFull counts values refused because the cache was full.
	RefusedFull uint64
}

// NewReplayCache makes a cache holding at most capacity values.
func NewReplayCache(capacity int) *ReplayCache {
	return &ReplayCache{capacity: max(capacity, 1), hash: newKeyHasher(),
		seen: make(map[uint64]struct{}), expiring: make(map[int64][]uint64)}
}

// Use records value for no particular owner.
func (c *ReplayCache) Use(value string, expires, now time.Time) error {
	return c.UseFor("", value, expires, now)
}

// UseFor records value for owner until expires (to the next whole second).
// It returns ErrReplay when the value is held already, and
// ErrReplayCacheIsFull when there is no room.
func (c *ReplayCache) UseFor(owner, value string, expires, now time.Time) error {
	h := c.hash.pair(owner, value)
	sec := now.Unix()
	until := expires.Unix()
	if expires.Nanosecond() != 0 {
		until++
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweep(sec)
	if _, ok := c.seen[h]; ok {
		return ErrReplay
	}
	if len(c.seen) >= c.capacity {
		c.refused++
		return ErrReplayCacheIsFull
	}
	// A bucket before the sweep line would never be swept.
	until = max(until, sec, c.swept)
	c.seen[h] = struct{}{}
	b, ok := c.expiring[until]
	if !ok && len(c.spare) > 0 {
		b, c.spare = c.spare[len(c.spare)-1], c.spare[:len(c.spare)-1]
	}
	c.expiring[until] = append(b, h)
	c.peak = max(c.peak, len(c.seen))
	return nil
}

// Held says whether value is held for owner, without recording it.
func (c *ReplayCache) Held(owner, value string) bool {
	h := c.hash.pair(owner, value)
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.seen[h]
	return ok
}

// sweep forgets the values whose memory ended before second now.
func (c *ReplayCache) sweep(now int64) {
	if now <= c.swept {
		return
	}
	if now-c.swept > int64(len(c.expiring)) {
		for s, b := range c.expiring {
			if s < now {
				c.drop(s, b)
			}
		}
	} else {
		for s := c.swept; s < now; s++ {
			if b, ok := c.expiring[s]; ok {
				c.drop(s, b)
			}
		}
	}
	c.swept = now
	// Go maps keep their size after deletions: after a burst, copy what
	// is left into a smaller map so that the memory is returned.
	if c.peak >= 1<<16 && len(c.seen) < c.peak/4 {
		m := make(map[uint64]struct{}, 2*len(c.seen))
		for h := range c.seen {
			m[h] = struct{}{}
		}
		c.seen, c.peak = m, len(m)
	}
}

func (c *ReplayCache) drop(s int64, b []uint64) {
	for _, h := range b {
		delete(c.seen, h)
	}
	delete(c.expiring, s)
	if cap(b) <= 1<<16 && len(c.spare) < 8 {
		c.spare = append(c.spare, b[:0])
	}
}

// Len returns how many values are remembered.
func (c *ReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// Stats returns the cache's figures.
func (c *ReplayCache) Stats() ReplayStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ReplayStats{Remembered: len(c.seen), Capacity: c.capacity, RefusedFull: c.refused}
}
