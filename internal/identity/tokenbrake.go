package identity

import (
	"net/netip"
	"time"
)

// TokenEndpointLimits bound the work an unauthenticated client can make the
// token endpoint do. Each is a token bucket of failed authentications.
type TokenEndpointLimits struct {
	// FailuresPerSource: failed authentications from one source address
	// (an IPv6 address counts as its /64). Past it, the source's requests
	// are answered 429 before any signature is checked.
	FailuresPerSource Rate
	// FailuresPerAgent: failed authentications naming one agent id, known
	// or not. Past it, requests naming the agent are answered 429, except
	// from a source with no recent failure, so that an attacker cannot
	// lock an agent out by failing in its name.
	FailuresPerAgent Rate
	// RefusalEntries: refusals written one by one to the audit log and the
	// server log. The others are counted and summarised in one entry and
	// one line every RefusalSummaryInterval.
	RefusalEntries Rate
}

// DefaultTokenEndpointLimits are the limits when none are configured.
var DefaultTokenEndpointLimits = TokenEndpointLimits{
	FailuresPerSource: Rate{PerSecond: 10, Burst: 50},
	FailuresPerAgent:  Rate{PerSecond: 5, Burst: 20},
	RefusalEntries:    Rate{PerSecond: 20, Burst: 100},
}

// RefusalSummaryInterval is how often refusals that were not recorded one
// by one are summarised.
const RefusalSummaryInterval = 10 * time.Second

// maxBrakeKeys bounds each table of buckets; past it new sources (or agent
// ids) share one bucket.
const maxBrakeKeys = 1 << 16

// authBrake applies TokenEndpointLimits. A request takes a token from its
// source's bucket, and one from its agent's, before its signature is
// checked, and gets them back if it authenticates: only failures count,
// and a source can never have more checks in flight than its burst.
type authBrake struct {
	source, agent *keyedLimiter
	hash          keyHasher
}

// brakeTicket is what one request took.
type brakeTicket struct {
	source, agent   uint64
	tookSource      bool
	tookAgent       bool
	sourceWasUnused bool
}

func newAuthBrake(l TokenEndpointLimits) *authBrake {
	return &authBrake{source: newKeyedLimiter(l.FailuresPerSource, maxBrakeKeys),
		agent: newKeyedLimiter(l.FailuresPerAgent, maxBrakeKeys), hash: newKeyHasher()}
}

// admitSource takes a token from the source's bucket.
func (b *authBrake) admitSource(t *brakeTicket, source string, now time.Time) error {
	t.source = b.hash.string(sourceKey(source))
	ok, unused, wait := b.source.take(t.source, now)
	if !ok {
		return &RateLimitError{Err: ErrTooManyFailures, Limit: "identity.token_endpoint.failures_per_source", RetryAfter: wait}
	}
	t.tookSource, t.sourceWasUnused = true, unused
	return nil
}

// admitAgent takes a token from the claimed agent's bucket. An agent with
// none left is refused only to sources that failed recently.
func (b *authBrake) admitAgent(t *brakeTicket, agent string, now time.Time) error {
	t.agent = b.hash.string(agent)
	ok, _, wait := b.agent.take(t.agent, now)
	switch {
	case ok:
		t.tookAgent = true
	case !t.sourceWasUnused:
		return &RateLimitError{Err: ErrTooManyFailures, Limit: "identity.token_endpoint.failures_per_agent", RetryAfter: wait}
	}
	return nil
}

// settle gives the tokens back unless the request failed to authenticate.
func (b *authBrake) settle(t *brakeTicket, failed bool, now time.Time) {
	if failed {
		return
	}
	if t.tookSource {
		b.source.give(t.source, now)
	}
	if t.tookAgent {
		b.agent.give(t.agent, now)
	}
}

// sourceKey is the bucket of an address: itself, or its /64 for IPv6,
// where one host commonly has a whole /64.
func sourceKey(source string) string {
	a, err := netip.ParseAddr(source)
	if err != nil {
		return source
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
