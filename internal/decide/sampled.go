package decide

import (
	"sync"
	"time"
)

// sampled lets a kind of log line through at most once every sampleEvery,
// with how many were held back since: under load a line per decision
// (every evaluation timing out, every hidden tool of every list) would
// flood the log.
type sampled struct {
	mu      sync.Mutex
	last    time.Time
	skipped int
}

const sampleEvery = 10 * time.Second

// due says whether to log now, and how many lines were held back.
func (s *sampled) due() (bool, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if now.Sub(s.last) < sampleEvery {
		s.skipped++
		return false, 0
	}
	n := s.skipped
	s.last, s.skipped = now, 0
	return true, n
}
