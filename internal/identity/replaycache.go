package identity

import (
	"slices"
	"sync"
	"time"
)

// ReplayCache remembers single-use values (DPoP proof ids) until they
// expire, so that each is accepted once. It keeps, per value, a 64-bit hash
// of the owner (the key that signed the proof) and the value under a secret
// random seed, with the second its memory ends, in the map of the
// replayWindow seconds that second falls in. A window's map is dropped
// whole once all of its seconds are past: values are never deleted one by
// one, so no map fills with the deleted slots that made one map of every
// value grow by two thirds over the first hour of steady use
// (TestReplayMemoryFlatUnderChurn). A value is never
// forgotten before its expiry: when the cache holds Capacity values it
// refuses new ones (ErrReplayCacheIsFull) instead.
//
// Two different values with the same hash would make the second look like a
// replay: a refusal, never an acceptance, and with four million values held
// a chance below one in a million million per proof. The seed is secret,
// so nobody outside the process can aim for a collision.
type ReplayCache struct {
	capacity int
	hash     keyHasher

	mu      sync.Mutex
	windows []replayWindowMap // in no order; a few dozen at most
	held    int               // values in windows, expired or not
	swept   int64             // windows wholly before this second are gone
	refused uint64            // values refused because the cache was full
}

// replayWindow is the seconds of one window of the replay memory: the
// values of a window stay counted (not held) up to that long after their
// expiry, and a check looks in (proof lifetime / replayWindow) maps.
const replayWindow = 8

// replayWindowMap holds the values whose memory ends in one window: hash
// to the last second of its memory.
type replayWindowMap struct {
	window int64 // second / replayWindow
	until  map[uint64]int64
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
	return &ReplayCache{capacity: max(capacity, 1), hash: newKeyHasher()}
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
	if c.holds(h, sec) {
		return ErrReplay
	}
	if c.held >= c.capacity {
		c.refused++
		return ErrReplayCacheIsFull
	}
	// Held for this second at least, and never in a window already swept.
	until = max(until, sec, c.swept)
	w := windowOf(until)
	i := slices.IndexFunc(c.windows, func(m replayWindowMap) bool { return m.window == w })
	if i < 0 {
		c.windows = append(c.windows, replayWindowMap{window: w, until: make(map[uint64]int64)})
		i = len(c.windows) - 1
	}
	// Expired but not yet swept, the value may be in this window already:
	// it is counted once.
	if _, counted := c.windows[i].until[h]; !counted {
		c.held++
	}
	c.windows[i].until[h] = until
	return nil
}

// windowOf is the window of second s (floor division: seconds before 1970
// too).
func windowOf(s int64) int64 {
	if s < 0 {
		return (s - replayWindow + 1) / replayWindow
	}
	return s / replayWindow
}

// holds says whether hash h is held at second now: in a window, its
// memory not ended before now.
func (c *ReplayCache) holds(h uint64, now int64) bool {
	for _, m := range c.windows {
		if until, ok := m.until[h]; ok && until >= now {
			return true
		}
	}
	return false
}

// Held says whether value is held for owner at now, without recording it.
func (c *ReplayCache) Held(owner, value string, now time.Time) bool {
	h := c.hash.pair(owner, value)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.holds(h, now.Unix())
}

// sweep drops the windows whose seconds all ended before second now.
func (c *ReplayCache) sweep(now int64) {
	if now <= c.swept {
		return
	}
	c.windows = slices.DeleteFunc(c.windows, func(m replayWindowMap) bool {
		if (m.window+1)*replayWindow <= now {
			c.held -= len(m.until)
			return true
		}
		return false
	})
	c.swept = now
}

// Len returns how many values are counted: those held, and expired ones
// of windows not yet past.
func (c *ReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held
}

// Stats returns the cache's figures.
func (c *ReplayCache) Stats() ReplayStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ReplayStats{Remembered: c.held, Capacity: c.capacity, RefusedFull: c.refused}
}
