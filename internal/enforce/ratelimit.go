package enforce

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

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
func (l *Limiter) Allow(agent string) bool { return l.AllowN(agent, 1) }

// AllowN takes n requests' worth from the agent's bucket (at most a
// burst's): a request that makes n decisions' worth of work costs as much.
func (l *Limiter) AllowN(agent string, n int) bool {
	if l == nil || l.cfg.Rate <= 0 || n <= 0 {
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
	return b.l.AllowN(now, min(n, l.cfg.Burst))
}
