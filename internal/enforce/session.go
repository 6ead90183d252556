package enforce

import (
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Sessions keeps the taints of agents' sessions; a session idle longer
// than its time to live is forgotten.
type Sessions struct {
	ttl   time.Duration
	mu    sync.Mutex
	m     map[string]*session
	swept time.Time
}

type session struct {
	taints []string
	seen   time.Time
}

// NewSessions keeps sessions idle up to ttl.
func NewSessions(ttl time.Duration) *Sessions {
	return &Sessions{ttl: ttl, m: map[string]*session{}}
}

// Taints returns a copy of the session's taints.
func (s *Sessions) Taints(key string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.sweep(now)
	e, ok := s.m[key]
	if !ok {
		return nil
	}
	e.seen = now
	return slices.Clone(e.taints)
}

// Add adds a taint to the session. Taints are never removed while the
// session lives.
func (s *Sessions) Add(key, taint string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	e, ok := s.m[key]
	if !ok {
		e = &session{}
		s.m[key] = e
	}
	e.seen = now
	if !slices.Contains(e.taints, taint) {
		e.taints = append(e.taints, taint)
	}
}

// sweep forgets idle sessions, at most once a minute.
func (s *Sessions) sweep(now time.Time) {
	if now.Sub(s.swept) < time.Minute {
		return
	}
	s.swept = now
	for k, e := range s.m {
		if now.Sub(e.seen) > s.ttl {
			delete(s.m, k)
		}
	}
}

// RateLimit is a token bucket per agent: Rate requests per second, bursts
// of Burst. Rate 0 means no limit.
type RateLimit struct {
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`
}

// Limiter is a token bucket per agent.
type Limiter struct {
	cfg   RateLimit
	mu    sync.Mutex
	m     map[string]*bucket
	swept time.Time
}

type bucket struct {
	l    *rate.Limiter
	seen time.Time
}

// NewLimiter makes a limiter; a zero Burst is the rate, at least 1.
func NewLimiter(cfg RateLimit) *Limiter {
	if cfg.Rate > 0 && cfg.Burst <= 0 {
		cfg.Burst = max(1, int(cfg.Rate))
	}
	return &Limiter{cfg: cfg, m: map[string]*bucket{}}
}

// Allow takes one request from the agent's bucket.
func (l *Limiter) Allow(agent string) bool {
	if l.cfg.Rate <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.swept) > time.Minute {
		l.swept = now
		for k, b := range l.m {
			if now.Sub(b.seen) > 10*time.Minute {
				delete(l.m, k)
			}
		}
	}
	b, ok := l.m[agent]
	if !ok {
		b = &bucket{l: rate.NewLimiter(rate.Limit(l.cfg.Rate), l.cfg.Burst)}
		l.m[agent] = b
	}
	b.seen = now
	return b.l.AllowN(now, 1)
}
