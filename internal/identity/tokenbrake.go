package identity

import (
	"net/netip"
	"time"
)

// TokenEndpointLimits bound the work a client can make the token endpoint
// do. Each is a token bucket: of failed authentications, of the requests
// of one authenticated agent, of refusals recorded one by one.
type TokenEndpointLimits struct {
	// FailuresPerSource: failed authentications from one source address
	// (an IPv6 address counts as its /64). Past it, the source's requests
	// are answered 429 before any signature is checked. Requests checked
	// at once and failing together can leave the bucket in debt, which
	// keeps the source out for as long as it takes to pay back.
	FailuresPerSource Rate
	// FailuresPerAgent: failed authentications naming one agent id, known
	// or not. Past it, requests naming the agent are answered 429, except
	// from a source with no recent failure, so that an attacker cannot
	// lock an agent out by failing in its name.
	FailuresPerAgent Rate
	// RequestsPerAgent: requests one agent authenticated (tokens, exchanges,
	// revocations), so that an agent with its own key cannot keep the
	// endpoint busy for the others. Past it, its requests are answered 429
	// before anything is issued or signed.
	RequestsPerAgent Rate
	// RefusalEntries: refusals written one by one to the audit log and the
	// server log. The others are counted and summarised in one entry and
	// one line every RefusalSummaryInterval.
	RefusalEntries Rate
}

// DefaultTokenEndpointLimits are the limits when none are configured.
var DefaultTokenEndpointLimits = TokenEndpointLimits{
	FailuresPerSource: Rate{PerSecond: 10, Burst: 50},
	FailuresPerAgent:  Rate{PerSecond: 5, Burst: 20},
	RequestsPerAgent:  Rate{PerSecond: 20, Burst: 100},
	RefusalEntries:    Rate{PerSecond: 20, Burst: 100},
}

// RefusalSummaryInterval is how often refusals that were not recorded one
// by one are summarised.
const RefusalSummaryInterval = 10 * time.Second

// maxBrakeKeys bounds each table of buckets; past it new sources (or agent
// ids) share one bucket.
const maxBrakeKeys = 1 << 16

// authBrake applies TokenEndpointLimits. A request is admitted while its
// source's bucket, and its claimed agent's, hold a token; each failure to
// authenticate then takes one from both. Successes cost nothing, so that
// any number of agents may authenticate at once from one address.
type authBrake struct {
	source, agent *keyedLimiter
	// requests limits each authenticated agent's requests.
	requests *keyedLimiter
	hash     keyHasher
}

// brakeTicket is what the brake knows of one request.
type brakeTicket struct {
	source, agent   uint64
	hasAgent        bool
	sourceWasUnused bool // no failure from the source is still counted
	agentRefused    bool // refused by the agent's limit
}

func newAuthBrake(l TokenEndpointLimits) *authBrake {
	return &authBrake{source: newKeyedLimiter(l.FailuresPerSource, maxBrakeKeys),
		agent: newKeyedLimiter(l.FailuresPerAgent, maxBrakeKeys), requests: newKeyedLimiter(l.RequestsPerAgent, maxBrakeKeys),
		hash: newKeyHasher()}
}

// admitSource refuses a source with no failures left.
func (b *authBrake) admitSource(t *brakeTicket, source string, now time.Time) error {
	t.source = b.hash.string(sourceKey(source))
	ok, unused, wait := b.source.peek(t.source, now)
	if !ok {
		return &RateLimitError{Err: ErrTooManyFailures, Limit: "identity.token_endpoint.failures_per_source", RetryAfter: wait}
	}
	t.sourceWasUnused = unused
	return nil
}

// admitAgent refuses a request naming an agent with no failures left,
// unless it comes from a source with no recent failure.
func (b *authBrake) admitAgent(t *brakeTicket, agent string, now time.Time) error {
	t.agent, t.hasAgent = b.hash.string(agent), true
	if ok, _, wait := b.agent.peek(t.agent, now); !ok && !t.sourceWasUnused {
		t.agentRefused = true
		return &RateLimitError{Err: ErrTooManyFailures, Limit: "identity.token_endpoint.failures_per_agent", RetryAfter: wait}
	}
	return nil
}

// admitRequest takes one of an authenticated agent's requests.
func (b *authBrake) admitRequest(agent string, now time.Time) error {
	if ok, _, wait := b.requests.take(b.hash.string(agent), now); !ok {
		return &RateLimitError{Err: ErrTooManyRequests, Limit: "identity.token_endpoint.requests_per_agent", RetryAfter: wait}
	}
	return nil
}

// refundRequest gives back a request of agent that was not carried out.
func (b *authBrake) refundRequest(agent string, now time.Time) {
	b.requests.give(b.hash.string(agent), now)
}

// settle counts a failure against the source and the agent. A request the
// agent's limit refused counts against its source, which failed before:
// one that keeps naming the agent soon meets its own limit, and is then
// refused before its assertion is even parsed.
func (b *authBrake) settle(t *brakeTicket, failed bool, now time.Time) {
	switch {
	case t.agentRefused:
		b.source.charge(t.source, now)
	case failed:
		b.source.charge(t.source, now)
		if t.hasAgent {
			b.agent.charge(t.agent, now)
		}
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
