package decide

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/policy"
)

// ShadowStats counts shadow evaluations.
type ShadowStats struct {
	Evaluated     int64 `json:"evaluated"`
	Disagreements int64 `json:"disagreements"`
	// Dropped were not evaluated: the queue was full.
	Dropped int64 `json:"dropped"`
}

// shadowRunner evaluates the shadow version off the decision path, one job
// at a time, and records every disagreement with the active version in the
// audit log (kind policy, action policy.shadow_disagreement).
type shadowRunner struct {
	jobs   chan shadowJob
	log    *audit.Log
	lg     *slog.Logger
	done   chan struct{}
	once   sync.Once
	closed atomic.Bool
	mu     sync.RWMutex // guards sends against close

	evaluated, disagreements, dropped atomic.Int64
}

type shadowJob struct {
	engine *policy.Engine
	input  map[string]any
	// sent are the resource attributes the enforcement point sent: the
	// shadow's own catalog decides what the resource's attributes are.
	sent     map[string]any
	at       time.Time
	id       string
	agent    string
	action   string
	resource json.RawMessage
	pep      string
	active   Decision
}

func startShadow(queue int, log *audit.Log, lg *slog.Logger) *shadowRunner {
	s := &shadowRunner{jobs: make(chan shadowJob, queue), log: log, lg: lg, done: make(chan struct{})}
	go s.run()
	return s
}

func (s *shadowRunner) submit(j shadowJob) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return
	}
	select {
	case s.jobs <- j:
	default:
		s.dropped.Add(1)
	}
}

func (s *shadowRunner) run() {
	defer close(s.done)
	for j := range s.jobs {
		s.evaluate(j)
	}
}

func (s *shadowRunner) evaluate(j shadowJob) {
	ctx := context.Background()
	input := maps.Clone(j.input) // the decision's, shared: not changed here
	if r, ok := input["resource"].(map[string]any); ok {
		r = maps.Clone(r)
		kind, _ := r["kind"].(string)
		id, _ := r["id"].(string)
		r["attributes"] = j.engine.Resources().Enrich(kind, id, j.sent)
		input["resource"] = r
	}
	res, err := j.engine.Evaluate(ctx, input, j.at)
	v := policy.Judge(res, err, nil)
	s.evaluated.Add(1)
	if v.Outcome == j.active.Outcome && sameReasons(v.Reasons, j.active.Reasons) {
		return
	}
	s.disagreements.Add(1)
	detail, _ := json.Marshal(map[string]any{
		"action": j.action,
		"active": map[string]any{"version": j.active.PolicyVersion, "outcome": j.active.Outcome, "reasons": j.active.Reasons, "audit_index": j.active.AuditIndex},
		"shadow": map[string]any{"version": j.engine.Version(), "outcome": v.Outcome, "reasons": v.Reasons},
	})
	e := &audit.Entry{Kind: audit.KindPolicy, Time: j.at, Action: "policy.shadow_disagreement", DecisionID: j.id,
		Agent: j.agent, Resource: j.resource, EnforcementPoint: j.pep, Outcome: string(v.Outcome), Reasons: v.Reasons,
		PolicyVersion: j.engine.Version(), Detail: detail}
	if _, err := s.log.Append(ctx, e); err != nil {
		s.lg.Error("shadow: a disagreement could not be recorded", "decision_id", j.id, "err", err)
	}
}

func sameReasons(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

func (s *shadowRunner) stats() ShadowStats {
	return ShadowStats{Evaluated: s.evaluated.Load(), Disagreements: s.disagreements.Load(), Dropped: s.dropped.Load()}
}

func (s *shadowRunner) close() {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed.Store(true)
		close(s.jobs)
		s.mu.Unlock()
		<-s.done
	})
}
