// Package enforce holds what Warden's enforcement points share: the way
// they ask for decisions, and how they read an agent's credentials from an
// HTTP request.
package enforce

import (
	"context"

	"github.com/warden-run/warden/internal/decide"
)

// Decider answers an enforcement point's questions. Every answer that is
// not a clean allow is a deny; an error means the request was malformed.
type Decider interface {
	// Decide decides a request whose DPoP proof, if any, the enforcement
	// point has verified itself.
	Decide(ctx context.Context, req *decide.Request) (decide.Decision, error)
	// MayAllow says whether some arguments could make req allowed.
	MayAllow(ctx context.Context, req *decide.Request) bool
}

// Local asks the decision pipeline of this process, as the enforcement
// point Name serving Audiences: every decision checks that the agent's
// token was issued for one of them, and with none every decision is a deny.
type Local struct {
	Pipeline  *decide.Pipeline
	Name      string
	Audiences []string
}

// Decide implements Decider.
func (l Local) Decide(ctx context.Context, req *decide.Request) (decide.Decision, error) {
	return l.Pipeline.DecideVerified(ctx, decide.InProcess(l.Name, l.Audiences...), req)
}

// MayAllow implements Decider.
func (l Local) MayAllow(ctx context.Context, req *decide.Request) bool {
	return l.Pipeline.MayAllow(ctx, decide.InProcess(l.Name, l.Audiences...), req)
}

// Trust levels of an upstream, sent to the decision point as the
// resource's trust attribute: an allowed read of an untrusted one taints
// the agent (untrusted_content) for its later decisions.
const (
	Trusted        = "trusted"
	Untrusted      = "untrusted"
	TaintUntrusted = "untrusted_content"
)
