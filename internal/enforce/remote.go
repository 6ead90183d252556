package enforce

import (
	"context"
	"errors"

	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/wire"
)

// ReasonNoDecision is the reason of the deny an enforcement point gives
// itself when the Warden server did not answer (unreachable, slow, or an
// answer that is not a decision).
const ReasonNoDecision = "warden.decision_unavailable"

// Remote asks a Warden server's decision API (wire.Client) as a
// registered enforcement point.
type Remote struct {
	Client wire.Client
}

// Decide implements Decider: the server verifies the agent's token and
// the DPoP proof in req. Unreachable, slow or garbled is a deny
// (ReasonNoDecision), never an error that could be mistaken for less;
// only a request the server calls malformed is an error.
func (r Remote) Decide(ctx context.Context, req *decide.Request) (decide.Decision, error) {
	d, err := r.Client.Decide(ctx, req)
	switch {
	case errors.Is(err, wire.ErrInvalidRequest):
		return decide.Decision{}, err
	case err != nil:
		return decide.Decision{Outcome: policy.Deny, Reasons: []string{ReasonNoDecision}}, nil
	}
	return d, nil
}

// MayAllow implements Decider; any failure is false.
func (r Remote) MayAllow(ctx context.Context, req *decide.Request) bool {
	return r.Client.MayAllow(ctx, req)
}
