package identity

import (
	"context"
	"fmt"
	"time"

	"github.com/warden-run/warden/internal/store"
)

// Step-up: for a while, an agent under suspicion works on a short leash.
// Its tokens live at most StepUpTokenTTL, every request must carry a DPoP
// proof whatever its trust domain says, and the tokens it held when the
// step-up began are revoked, so it authenticates again with its key. The
// step-up lasts until the time in its record (AttrStepUpUntil), which
// policy sees among the agent's attributes, and ends by itself.
const (
	AttrStepUpUntil = "warden.step_up_until"
	StepUpTokenTTL  = time.Minute
	// MaxStepUp bounds how long one step-up lasts.
	MaxStepUp = 30 * 24 * time.Hour
)

// SteppedUp reports whether a is under a step-up at now.
func SteppedUp(a store.Agent, now time.Time) bool {
	s := a.Attributes[AttrStepUpUntil]
	if s == "" {
		return false // most agents, on every request: no parse, no error to allocate
	}
	until, err := time.Parse(time.RFC3339, s)
	return err == nil && now.Before(until)
}

// StepUp puts the agent under a step-up until then, and revokes every
// token it holds now.
func (r *Registry) StepUp(ctx context.Context, actor, id string, until time.Time, reason string) (store.Agent, error) {
	now := r.now()
	if !until.After(now) || until.Sub(now) > MaxStepUp {
		return store.Agent{}, fmt.Errorf("%w: a step-up ends after now and within %s", ErrInvalidRequest, MaxStepUp)
	}
	stamp := until.UTC().Truncate(time.Second).Format(time.RFC3339)
	return r.update(ctx, actor, id, "agent.step_up", map[string]any{"until": stamp, "reason": reason}, func(a *store.Agent) error {
		attrs := make(map[string]string, len(a.Attributes)+1)
		for k, v := range a.Attributes {
			attrs[k] = v
		}
		attrs[AttrStepUpUntil] = stamp
		a.Attributes = attrs
		revokeAgentTokens(a)
		return nil
	})
}

// steppedUp reports whether the view has id under a step-up at now.
func (v *TrustView) steppedUp(id string, now time.Time) bool {
	a, ok := v.Agent(id)
	return ok && SteppedUp(a, now)
}
