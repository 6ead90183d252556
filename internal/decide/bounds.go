package decide

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warden-run/warden/internal/policy"
)

// DefaultRequestBudget is how long the evaluations of one batch or
// may-allow request may take together, unless configured otherwise.
const DefaultRequestBudget = time.Second

// MaxMayAllowTargets is the most actions one may-allow request may ask about.
const MaxMayAllowTargets = 100

// work counts evaluations, and the batch and may-allow requests running,
// so that tests can see work stop.
type work struct {
	evaluations atomic.Int64
	running     atomic.Int64
}

// DecideBatch decides every request as Decide does. Evaluations run a few
// at a time (one per CPU), in order, within the request budget; requests
// not evaluated when it is spent are denies (warden.request_budget_exhausted),
// recorded. The entries are then written concurrently, so that they share
// syncs. A malformed request gets its error in its place; the others are
// decided. When ctx is done, the requests not yet evaluated are not: each
// gets ctx's error, and nothing more is recorded.
func (p *Pipeline) DecideBatch(ctx context.Context, pep Point, reqs []Request) ([]Decision, []error) {
	p.work.running.Add(1)
	defer p.work.running.Add(-1)
	out := make([]Decision, len(reqs))
	errs := make([]error, len(reqs))
	made := make([]*decision, len(reqs))
	budget, cancel := context.WithTimeout(ctx, p.cfg.RequestBudget)
	defer cancel()

	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(reqs)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(reqs); i = int(next.Add(1) - 1) {
				made[i], errs[i] = p.prepare(pep, &reqs[i])
				switch {
				case errs[i] != nil:
				case ctx.Err() != nil:
					made[i], errs[i] = nil, fmt.Errorf("decide: %w", context.Cause(ctx))
				case budget.Err() != nil:
					made[i].deny(ReasonBudgetExhausted)
				default:
					p.conclude(budget, made[i])
					if budget.Err() != nil && ctx.Err() == nil && slices.Equal(made[i].d.Reasons, []string{policy.ReasonTimeout}) {
						made[i].deny(ReasonBudgetExhausted) // the budget, not the policy, cut it short
					}
				}
			}
		})
	}
	wg.Wait()
	for i, c := range made {
		if c != nil {
			wg.Go(func() { out[i] = p.record(ctx, c) })
		}
	}
	wg.Wait()
	return out, errs
}

// Target is an action on a resource, whose arguments are not known.
type Target struct {
	Action   string   `json:"action"`
	Resource Resource `json:"resource"`
}

// MayAllow says whether the policy could allow req, from the enforcement
// point pep, with some arguments (req.Args are not used): an enforcement
// point hides from an agent what it could never do. It records nothing and
// decides nothing; any failure (token, audience, agent, policy) is false.
func (p *Pipeline) MayAllow(ctx context.Context, pep Point, req *Request) bool {
	return p.MayAllowTargets(ctx, pep, req, []Target{{Action: req.Action, Resource: req.Resource}})[0]
}

// MayAllowTargets is MayAllow for each of targets, for the agent of
// req.Token, in the context of req (whose action and resource are not
// used). The agent is authenticated once; the targets are evaluated in
// order within the request budget, and those left when it is spent, or
// when ctx is done, are false.
func (p *Pipeline) MayAllowTargets(ctx context.Context, pep Point, req *Request, targets []Target) []bool {
	p.work.running.Add(1)
	defer p.work.running.Add(-1)
	out := make([]bool, len(targets))
	live := p.policies.Live()
	if live.Active == nil || len(targets) == 0 {
		return out
	}
	// The token and context are checked once, with a stand-in for the
	// action and resource; each target is checked in its turn.
	base := *req
	base.Action, base.Resource = "may-allow", Resource{Kind: "any"}
	if base.Validate() != nil {
		return out
	}
	r, _ := pep.trusted(&base)
	tok, err := p.verifier.Verify(ctx, r.Token)
	if err != nil {
		return out
	}
	if wrong, _ := pep.checkAudience(r, tok); wrong != "" {
		return out
	}
	rec, ok := p.view.Agent(tok.Subject)
	if !ok || !rec.Status.MayHoldTokens() {
		return out
	}
	held, err := p.heldTaints(tok)
	if err != nil {
		return out
	}
	budget, cancel := context.WithTimeout(ctx, p.cfg.RequestBudget)
	defer cancel()
	at := p.now().UTC().Truncate(time.Second)
	for i, t := range targets {
		if budget.Err() != nil {
			if ctx.Err() == nil {
				p.lg.Warn("may-allow: the request budget is spent; the remaining actions are hidden", "pep", pep.Name, "hidden", len(targets)-i)
			}
			break
		}
		one := *r
		one.Action, one.Resource = t.Action, t.Resource
		if one.Validate() != nil {
			continue
		}
		p.work.evaluations.Add(1)
		input, _ := p.input(&one, map[string]any{}, tok, rec, live, at, held)
		may, err := live.Active.MayAllow(budget, input, at)
		if err != nil && budget.Err() == nil {
			if ok, held := p.hidden.due(); ok {
				p.lg.Warn("policy: could not tell whether an action may be allowed; hidden", append([]any{"action", t.Action,
					"resource", t.Resource.ID, "hidden_since_last_line", held}, evalErrorAttrs(err)...)...)
			}
		}
		out[i] = may && err == nil
	}
	return out
}
