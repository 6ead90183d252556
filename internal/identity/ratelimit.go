package identity

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"time"
)

// Rate is a token bucket: PerSecond tokens are added every second, up to
// Burst.
type Rate struct {
	PerSecond float64
	Burst     int
}

func (r Rate) valid() bool {
	return r.PerSecond > 0 && !math.IsInf(r.PerSecond, 0) && !math.IsNaN(r.PerSecond) && r.Burst >= 1
}

func (r Rate) String() string { return fmt.Sprintf("%g/s (burst %d)", r.PerSecond, r.Burst) }

// Refusals by a rate limit. Each is wrapped by a *RateLimitError that says
// when to try again.
var (
	// ErrProofRateExceeded: one key signed more DPoP proofs than its rate
	// allows (identity.dpop.proofs_per_key).
	ErrProofRateExceeded = errors.New("DPoP proof rate of the key exceeded")
	// ErrTooManyFailures: too many failed authentications at the token
	// endpoint from one source or naming one agent.
	ErrTooManyFailures = errors.New("too many failed authentications")
	// ErrTooManyRequests: an authenticated agent sent more token endpoint
	// requests than its rate allows.
	ErrTooManyRequests = errors.New("too many token endpoint requests from the agent")
)

// RateLimitError is a refusal by a rate limit: the request may be sent again
// after RetryAfter.
type RateLimitError struct {
	Err        error // ErrProofRateExceeded, ErrTooManyFailures or ErrTooManyRequests
	Limit      string
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("%v (%s); retry after %s", e.Err, e.Limit, e.RetryAfter)
}

func (e *RateLimitError) Unwrap() error { return e.Err }

// RetryAfterSeconds is the whole number of seconds, at least 1, for a
// Retry-After header.
func (e *RateLimitError) RetryAfterSeconds() int {
	return max(1, int(math.Ceil(e.RetryAfter.Seconds())))
}

// keyedLimiter keeps a token bucket per key (a 64-bit hash) in bounded
// memory. A key without a bucket has a full one, so full buckets can be
// forgotten at any time; when maxKeys buckets are not full, new keys share
// one overflow bucket rather than grow the table.
type keyedLimiter struct {
	rate    Rate
	maxKeys int

	mu       sync.Mutex
	buckets  map[uint64]bucketLevel
	overflow bucketLevel
	hasOver  bool
	pruned   int64 // unix nanos of the last pruning
}

// bucketLevel is a bucket's tokens as of a moment.
type bucketLevel struct {
	tokens float64
	at     int64 // unix nanos
}

func newKeyedLimiter(r Rate, maxKeys int) *keyedLimiter {
	return &keyedLimiter{rate: r, maxKeys: maxKeys, buckets: make(map[uint64]bucketLevel)}
}

// level is b's tokens at now.
func (l *keyedLimiter) level(b bucketLevel, now int64) float64 {
	if now <= b.at {
		return b.tokens
	}
	return min(float64(l.rate.Burst), b.tokens+float64(now-b.at)/1e9*l.rate.PerSecond)
}

// get returns key's bucket as of now (full when it has none), and where it
// is kept: false when the table is full and key shares the overflow bucket.
func (l *keyedLimiter) get(key uint64, now int64) (bucketLevel, bool) {
	if b, ok := l.buckets[key]; ok {
		return bucketLevel{l.level(b, now), now}, true
	}
	if len(l.buckets) >= l.maxKeys {
		l.prune(now)
	}
	if len(l.buckets) < l.maxKeys {
		return bucketLevel{float64(l.rate.Burst), now}, true
	}
	if !l.hasOver {
		l.overflow, l.hasOver = bucketLevel{float64(l.rate.Burst), now}, true
	}
	return bucketLevel{l.level(l.overflow, now), now}, false
}

func (l *keyedLimiter) put(key uint64, b bucketLevel, inTable bool) {
	switch {
	case !inTable:
		l.overflow = b
	case b.tokens >= float64(l.rate.Burst):
		delete(l.buckets, key) // a missing bucket is a full one
	default:
		l.buckets[key] = b
	}
}

// take removes one token from key's bucket. When there is none it takes
// nothing and says how long until there is one. full reports whether the
// bucket was full before: a key with no recent use.
func (l *keyedLimiter) take(key uint64, now time.Time) (ok, full bool, wait time.Duration) {
	n := now.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	if n-l.pruned > int64(10*time.Second) {
		l.prune(n)
	}
	b, in := l.get(key, n)
	full = b.tokens >= float64(l.rate.Burst)
	if b.tokens < 1 {
		return false, false, time.Duration((1 - b.tokens) / l.rate.PerSecond * 1e9)
	}
	b.tokens--
	l.put(key, b, in)
	return true, full, 0
}

// give puts a token back in key's bucket, up to its burst.
func (l *keyedLimiter) give(key uint64, now time.Time) {
	n := now.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, in := l.get(key, n)
	b.tokens = min(b.tokens+1, float64(l.rate.Burst))
	l.put(key, b, in)
}

// peek reports whether key's bucket holds a token, whether it is full (a
// key with no recent use), and otherwise how long until it holds one.
func (l *keyedLimiter) peek(key uint64, now time.Time) (ok, full bool, wait time.Duration) {
	n := now.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	if n-l.pruned > int64(10*time.Second) {
		l.prune(n)
	}
	b, _ := l.get(key, n)
	if b.tokens < 1 {
		return false, false, time.Duration((1 - b.tokens) / l.rate.PerSecond * 1e9)
	}
	return true, b.tokens >= float64(l.rate.Burst), 0
}

// charge takes a token from key's bucket even when it has none: requests
// admitted together and failing together leave a debt, paid back in time.
func (l *keyedLimiter) charge(key uint64, now time.Time) {
	n := now.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, in := l.get(key, n)
	b.tokens--
	l.put(key, b, in)
}

// prune forgets the buckets that have filled up again.
func (l *keyedLimiter) prune(now int64) {
	l.pruned = now
	for k, b := range l.buckets {
		if l.level(b, now) >= float64(l.rate.Burst) {
			delete(l.buckets, k)
		}
	}
}

// keyHasher hashes strings with a secret seed, so that nobody outside the
// process can choose values that collide.
type keyHasher struct{ seed maphash.Seed }

func newKeyHasher() keyHasher { return keyHasher{maphash.MakeSeed()} }

func (h keyHasher) string(s string) uint64 { return maphash.String(h.seed, s) }

// pair hashes two strings as one value, unambiguously (the first's length
// goes first).
func (h keyHasher) pair(a, b string) uint64 {
	var m maphash.Hash
	m.SetSeed(h.seed)
	var n [8]byte
	l := uint64(len(a))
	for i := range n {
		n[i] = byte(l >> (8 * i))
	}
	m.Write(n[:])
	m.WriteString(a)
	m.WriteString(b)
	return m.Sum64()
}
