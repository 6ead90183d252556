package app

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/warden-run/warden/internal/audit"
)

// ActionUsageRelayed is the action of a usage entry: what an enforcement
// point relayed to one agent over one interval.
const ActionUsageRelayed = "usage.relayed"

// usageEvery is the interval one usage entry sums.
const usageEvery = time.Minute

// usageRecorder sums what an enforcement point relays to each agent and
// writes one usage entry per agent and interval to the audit log, where the
// behavioural monitor reads it (data_volume). An entry per interval, not per
// call, keeps the log's cost to a few entries a minute.
type usageRecorder struct {
	log  *audit.Log
	pep  string
	lg   *slog.Logger
	mu   sync.Mutex
	from time.Time
	sums map[string]*usage
}

type usage struct {
	Bytes   int64 `json:"bytes"`
	Results int64 `json:"results"`
}

func newUsageRecorder(l *audit.Log, pep string, lg *slog.Logger) *usageRecorder {
	return &usageRecorder{log: l, pep: pep, lg: lg, from: time.Now(), sums: map[string]*usage{}}
}

// relayed counts n bytes relayed to agent.
func (u *usageRecorder) relayed(agent string, n int) {
	u.mu.Lock()
	s := u.sums[agent]
	if s == nil {
		s = &usage{}
		u.sums[agent] = s
	}
	s.Bytes += int64(n)
	s.Results++
	u.mu.Unlock()
}

// run writes the sums every interval until ctx ends, and once more then.
func (u *usageRecorder) run(ctx context.Context) {
	t := time.NewTicker(usageEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			u.flush(context.WithoutCancel(ctx))
			return
		case <-t.C:
			u.flush(ctx)
		}
	}
}

func (u *usageRecorder) flush(ctx context.Context) {
	u.mu.Lock()
	sums, from, to := u.sums, u.from, time.Now()
	u.sums, u.from = map[string]*usage{}, to
	u.mu.Unlock()
	agents := make([]string, 0, len(sums))
	for a := range sums {
		agents = append(agents, a)
	}
	slices.Sort(agents)
	for _, a := range agents {
		detail, _ := json.Marshal(map[string]any{"bytes": sums[a].Bytes, "results": sums[a].Results,
			"from": from.UTC().Format(time.RFC3339Nano), "to": to.UTC().Format(time.RFC3339Nano)})
		e := &audit.Entry{Kind: audit.KindUsage, Action: ActionUsageRelayed, Agent: a, Outcome: "done", Time: to,
			EnforcementPoint: u.pep, Detail: detail}
		if _, err := u.log.Append(ctx, e); err != nil {
			// Kept for the next interval's entry: relayed bytes are not lost.
			u.lg.Warn("usage: an entry could not be recorded; it goes into the next", "agent", a, "bytes", sums[a].Bytes, "err", err)
			u.mu.Lock()
			cur := u.sums[a]
			if cur == nil {
				cur = &usage{}
				u.sums[a] = cur
			}
			cur.Bytes += sums[a].Bytes
			cur.Results += sums[a].Results
			u.mu.Unlock()
		}
	}
}
