package policy

import (
	"context"
	"sync"
	"time"
)

// A decision is a function of its input and the policy version: the
// version holds the data, the input holds the clock (context.time, whole
// seconds, which is also what time.now_ns returns). Identical inputs in
// the same second therefore get the same result, and the engine keeps the
// results of the current second so that a burst of identical requests is
// evaluated once. Bundles that call a non-deterministic builtin (rand.intn,
// uuid.rfc4122, ...) are always evaluated.

// memoLimit bounds the results kept for one second.
const memoLimit = 1 << 16

type memo struct {
	mu     sync.Mutex
	second int64
	m      map[[32]byte]Result
	hits   int64
	misses int64
}

// EvaluateKeyed is Evaluate with key, the SHA-256 of the input's canonical
// JSON, naming the input: a result already computed for the same key in
// the same second of at is returned without evaluating again. Errors are
// never kept. at must be whole seconds. parts, when given, are parts of
// the input already converted (see Part).
func (e *Engine) EvaluateKeyed(ctx context.Context, input any, parts []Part, key [32]byte, at time.Time) (Result, error) {
	if !e.rules.pure || at.Nanosecond() != 0 {
		return e.evaluate(ctx, input, parts, at)
	}
	sec := at.Unix()
	m := &e.memo
	m.mu.Lock()
	if m.second == sec {
		if r, ok := m.m[key]; ok {
			m.hits++
			m.mu.Unlock()
			return r, nil
		}
	}
	m.misses++
	m.mu.Unlock()
	r, err := e.evaluate(ctx, input, parts, at)
	if err != nil {
		return r, err
	}
	m.mu.Lock()
	if m.second != sec {
		if sec < m.second {
			m.mu.Unlock()
			return r, nil // a late caller: do not go back a second
		}
		m.second, m.m = sec, make(map[[32]byte]Result, len(m.m))
	}
	if len(m.m) < memoLimit {
		m.m[key] = r
	}
	m.mu.Unlock()
	return r, nil
}

// MemoStats reports how often EvaluateKeyed found a result kept.
func (e *Engine) MemoStats() (hits, misses int64) {
	e.memo.mu.Lock()
	defer e.memo.mu.Unlock()
	return e.memo.hits, e.memo.misses
}
