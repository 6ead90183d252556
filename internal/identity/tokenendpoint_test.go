package identity

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/store"
)

// entries returns the audit log's entries of kind token.
func (e *env) tokenEntries(t *testing.T) []*audit.Entry {
	t.Helper()
	n, err := e.audit.Size(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	data, err := e.audit.Read(e.ctx, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	var out []*audit.Entry
	for _, d := range data {
		en, err := audit.DecodeEntry(d)
		if err != nil {
			t.Fatal(err)
		}
		if en.Kind == audit.KindToken {
			out = append(out, en)
		}
	}
	return out
}

func fromSource(r TokenRequest, ip string) TokenRequest { r.Source = ip; return r }

// TestFailedAuthenticationIsRateLimited is the regression test of the token
// endpoint without a brake: one source sending bad assertions had every one
// verified (8,000 a second). Past its burst of failures a source is refused
// with ErrTooManyFailures before any signature check, and told when to come
// back; another source, and the agent's own good requests from a clean
// source, go on.
func TestFailedAuthenticationIsRateLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://dev/victim", []string{"r"}, nil)
	_, stranger := GenerateKey()
	var checks int
	var mu sync.Mutex
	verify := e.issuer.verifySignature
	e.issuer.verifySignature = func(jws *jose.JSONWebSignature, k ed25519.PublicKey) bool {
		mu.Lock()
		checks++
		mu.Unlock()
		return verify(jws, k)
	}
	const attacker = "203.0.113.7"
	burst := DefaultTokenEndpointLimits.FailuresPerSource.Burst
	// Each failure names another agent, so that only the source's limit applies.
	n := 0
	bad := func() TokenRequest {
		n++
		ghost := testAgent{id: fmt.Sprint("ai-agent://dev/guess-", n), priv: stranger}
		return fromSource(ccReq(e.assertion(ghost, assertionOpts{kid: "-"})), attacker)
	}
	for i := range burst {
		if _, err := e.issuer.Issue(e.ctx, bad()); !errors.Is(err, ErrUnknownAgent) {
			t.Fatalf("failure %d within the burst: %v", i, err)
		}
	}
	before := checks
	for range 200 {
		_, err := e.issuer.Issue(e.ctx, bad())
		var rl *RateLimitError
		if !errors.Is(err, ErrTooManyFailures) || !errors.As(err, &rl) || rl.RetryAfter <= 0 {
			t.Fatalf("past the burst: %v", err)
		}
		if oe := OAuthErrorFor(err); oe.Status != 429 || oe.Code != "slow_down" || oe.RetryAfter < 1 {
			t.Fatalf("answered %+v", oe)
		}
	}
	if checks != before {
		t.Fatalf("%d signatures checked for requests past the limit", checks-before)
	}
	// Another address is not held up, and neither is the agent itself from
	// its own address: it never failed there.
	if _, err := e.issuer.Issue(e.ctx, fromSource(ccReq(e.assertion(a, assertionOpts{})), "198.51.100.1")); err != nil {
		t.Fatalf("the agent from a clean source: %v", err)
	}
	// An IPv6 source is its /64.
	v6 := func(host string) TokenRequest {
		r := bad()
		r.Source = host
		return r
	}
	for i := range burst {
		host := fmt.Sprintf("2001:db8:1:2::%x", i+1)
		if _, err := e.issuer.Issue(e.ctx, v6(host)); errors.Is(err, ErrTooManyFailures) {
			t.Fatalf("IPv6 failure %d within the /64's burst: %v", i, err)
		}
	}
	if _, err := e.issuer.Issue(e.ctx, v6("2001:db8:1:2:ffff::1")); !errors.Is(err, ErrTooManyFailures) {
		t.Fatalf("another address of the same /64 past its burst: %v", err)
	}
	// Time refills the bucket.
	e.clock.Advance(time.Second)
	if _, err := e.issuer.Issue(e.ctx, bad()); !errors.Is(err, ErrUnknownAgent) {
		t.Fatalf("a second later: %v", err)
	}
}

// TestFailuresNamingAnAgentAreRateLimited: failures spread over many
// sources, all naming one agent, are limited per agent, known or not,
// without locking the agent out where it has not failed.
func TestFailuresNamingAnAgentAreRateLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://dev/target", []string{"r"}, nil)
	_, stranger := GenerateKey()
	ghost := testAgent{id: "ai-agent://dev/ghost", priv: stranger, kid: "ghost"}
	burst := DefaultTokenEndpointLimits.FailuresPerAgent.Burst
	for _, target := range []testAgent{a, ghost} {
		t.Run(target.id, func(t *testing.T) {
			// Two failures per source: the second from each source comes
			// from a source that failed before.
			refused := 0
			for i := range burst + 10 {
				src := fmt.Sprintf("192.0.2.%d", i%200)
				for range 2 {
					_, err := e.issuer.Issue(e.ctx, fromSource(ccReq(e.assertion(target, assertionOpts{key: stranger, kid: "-"})), src))
					if errors.Is(err, ErrTooManyFailures) {
						refused++
					}
				}
			}
			if refused < 10 {
				t.Fatalf("%d refusals by the per-agent limit", refused)
			}
		})
	}
	// The real agent, from an address that has not failed, still gets its token.
	if _, err := e.issuer.Issue(e.ctx, fromSource(ccReq(e.assertion(a, assertionOpts{})), "198.51.100.9")); err != nil {
		t.Fatalf("the agent from a clean source while its id is attacked: %v", err)
	}
}

// TestRefusalsDoTheSameWorkForUnknownAgents is the regression test of
// enumeration by timing: an assertion naming an agent that does not exist
// (or may not authenticate) was refused before any signature check, 80 µs
// sooner than a known agent's. Every refusal after the claims are read now
// goes through exactly one signature check.
func TestRefusalsDoTheSameWorkForUnknownAgents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://dev/known", []string{"r"}, nil)
	off := e.register("ai-agent://dev/off", []string{"r"}, nil)
	if _, err := e.reg.SetStatus(e.ctx, "admin:test", off.id, store.StatusDisabled, "test"); err != nil {
		t.Fatal(err)
	}
	_, stranger := GenerateKey()
	var checks []ed25519.PublicKey
	verify := e.issuer.verifySignature
	e.issuer.verifySignature = func(jws *jose.JSONWebSignature, k ed25519.PublicKey) bool {
		checks = append(checks, k)
		return verify(jws, k)
	}
	ghost := testAgent{id: "ai-agent://dev/ghost", priv: stranger, kid: Thumbprint(stranger.Public().(ed25519.PublicKey))}
	mars := testAgent{id: "ai-agent://mars/ghost", priv: stranger, kid: ghost.kid}
	cases := []struct {
		name string
		a    testAgent
		o    assertionOpts
		want error
	}{
		{"known agent, wrong key, its kid", a, assertionOpts{key: stranger}, ErrSignature},
		{"known agent, wrong key, no kid", a, assertionOpts{key: stranger, kid: "-"}, ErrSignature},
		{"known agent, a kid not its own", a, assertionOpts{key: stranger, kid: ghost.kid}, ErrKeyNotBound},
		{"unknown agent, with kid", ghost, assertionOpts{}, ErrUnknownAgent},
		{"unknown agent, no kid", ghost, assertionOpts{kid: "-"}, ErrUnknownAgent},
		{"unknown agent again (remembered as unknown)", ghost, assertionOpts{}, ErrUnknownAgent},
		{"disabled agent, its own key", off, assertionOpts{}, ErrAgentInactive},
		{"undeclared trust domain", mars, assertionOpts{}, ErrUnknownDomain},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checks = nil
			_, err := e.issuer.Issue(e.ctx, ccReq(e.assertion(c.a, c.o)))
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if oe := OAuthErrorFor(err); oe.Code != "invalid_client" || oe.Description != "client authentication failed" {
				t.Fatalf("answered %+v: every failure to authenticate must look alike", oe)
			}
			if len(checks) != 1 {
				t.Fatalf("%d signature checks, want 1", len(checks))
			}
		})
		e.clock.Advance(time.Second) // the rate limits are not what this test is about
	}
}

// TestTokensAreInTheAuditLog is the regression test of token issuance
// missing from the audit log: every token issued or exchanged has a durable
// entry (never the token itself) by the time Issue returns, and refusals
// are recorded with their cause.
func TestTokensAreInTheAuditLog(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://dev/planner", []string{"reader", "trader"}, map[string]string{AttrDelegateTo: "ai-agent://dev/tools/*"})
	b := e.register("ai-agent://dev/tools/quotes", []string{"reader"}, nil)
	it, err := e.issuer.Issue(e.ctx, fromSource(withScope(ccReq(e.assertion(a, assertionOpts{})), "reader"), "192.0.2.1"))
	if err != nil {
		t.Fatal(err)
	}
	ab, err := e.exchange(a, it.AccessToken, b.id, "")
	if err != nil {
		t.Fatal(err)
	}
	_, stranger := GenerateKey()
	if _, err := e.issuer.Issue(e.ctx, fromSource(ccReq(e.assertion(a, assertionOpts{key: stranger})), "192.0.2.66")); err == nil {
		t.Fatal("a bad assertion was accepted")
	}
	got := e.tokenEntries(t)
	if len(got) != 3 {
		t.Fatalf("%d token entries, want 3", len(got))
	}
	for _, en := range got {
		if strings.Contains(string(en.Detail), it.AccessToken) || strings.Contains(string(en.Detail), ab.AccessToken) ||
			strings.Contains(string(en.Detail), strings.Split(it.AccessToken, ".")[2]) {
			t.Fatalf("an entry holds a token: %s", en.Detail)
		}
	}
	var issued, exchanged, refused map[string]any
	for i, p := range []*map[string]any{&issued, &exchanged, &refused} {
		if err := json.Unmarshal(got[i].Detail, p); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name string
		ok   bool
	}{
		{"issued", got[0].Action == ActionTokenIssue && got[0].Agent == a.id && got[0].Outcome == "allow" &&
			issued["jti"] == it.JTI && issued["audience"] == "warden" && issued["scope"] == "reader" && issued["client"] == a.id &&
			issued["key"] == a.kid && issued["source"] == "192.0.2.1" && issued["token_type"] == "Bearer" && issued["expires"] != nil},
		{"exchanged", got[1].Action == ActionTokenExchange && got[1].Agent == a.id && got[1].Outcome == "allow" &&
			exchanged["jti"] == ab.JTI && exchanged["client"] == b.id && exchanged["key"] == b.kid &&
			fmt.Sprint(exchanged["act"]) == fmt.Sprint([]any{b.id}) && fmt.Sprint(exchanged["delegated_from"]) == fmt.Sprint([]any{it.JTI})},
		{"refused", got[2].Action == ActionTokenIssue && got[2].Agent == "" && got[2].Outcome == "deny" &&
			strings.Join(got[2].Reasons, ",") == "invalid_client,bad_signature" &&
			refused["claimed_agent"] == a.id && refused["source"] == "192.0.2.66"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !c.ok {
				t.Fatalf("entries:\n%+v\n%+v\n%+v", got[0], got[1], got[2])
			}
		})
	}
}

// TestNoTokenWithoutItsEntry: when the audit log cannot take the entry, no
// token is handed out, and the client is told to come back (503).
func TestNoTokenWithoutItsEntry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://dev/a", []string{"r"}, nil)
	e.audit.Close()
	it, err := e.issuer.Issue(e.ctx, ccReq(e.assertion(a, assertionOpts{})))
	if err == nil || it != nil {
		t.Fatalf("a token without its audit entry: %+v %v", it, err)
	}
	if oe := OAuthErrorFor(err); oe.Status != 503 || oe.Code != "temporarily_unavailable" {
		t.Fatalf("answered %+v (%v)", oe, err)
	}
}

// TestRefusalFloodIsSummarised: a flood of refusals writes at most the
// budget of entries one by one, and counts the rest, rate limited ones
// included, in summaries that account for every refusal.
func TestRefusalFloodIsSummarised(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const flood = 1000
	for i := range flood {
		// Garbage from many sources and from one, as a flood would send it.
		src := "203.0.113.5"
		if i%2 == 0 {
			src = fmt.Sprintf("198.51.100.%d", i%250)
		}
		if _, err := e.issuer.Issue(e.ctx, fromSource(ccReq("not.a.jwt"), src)); err == nil {
			t.Fatal("garbage accepted")
		}
	}
	e.clock.Advance(RefusalSummaryInterval)
	e.issuer.Close()
	one, summarised, summaries := 0, int64(0), 0
	rateLimited := int64(0)
	for _, en := range e.tokenEntries(t) {
		switch en.Action {
		case ActionTokenRefusals:
			summaries++
			var d summaryDetail
			if err := json.Unmarshal(en.Detail, &d); err != nil {
				t.Fatal(err)
			}
			var sum int64
			for r, n := range d.Reasons {
				sum += n
				if r == "slow_down/rate_limited" {
					rateLimited += n
				}
			}
			if sum != d.Count {
				t.Fatalf("summary %s: reasons add up to %d, not %d", en.Detail, sum, d.Count)
			}
			summarised += d.Count
		default:
			one++
		}
	}
	if budget := DefaultTokenEndpointLimits.RefusalEntries.Burst; one > budget {
		t.Fatalf("%d refusals recorded one by one, the budget is %d", one, budget)
	}
	if int64(one)+summarised != flood || summaries == 0 || rateLimited == 0 {
		t.Fatalf("%d one by one + %d summarised (%d rate limited) in %d summaries, want %d in all", one, summarised, rateLimited, summaries, flood)
	}
}

// TestConcurrentGoodRequestsAreNotLimited: only failures count. Many
// requests of one agent at once, from one address (a proxy, or many
// instances of an agent), are all served, more than any burst.
func TestConcurrentGoodRequestsAreNotLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var agents []testAgent
	for i := range 6 {
		agents = append(agents, e.register(fmt.Sprintf("ai-agent://dev/popular-%d", i), []string{"r"}, nil))
	}
	const n = 120 // above both bursts of failures, within each agent's rate
	reqs := make([]TokenRequest, n)
	for i := range reqs {
		reqs[i] = fromSource(ccReq(e.assertion(agents[i%len(agents)], assertionOpts{})), "192.0.2.10")
	}
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for _, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.issuer.Issue(e.ctx, r)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a good request refused: %v", err)
		}
	}
}

// Counted refusals are written once their interval is over, also when no
// request comes after (a flood that stops), not only at the next request.
func TestRefusalSummaryWithoutFurtherRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for range 200 {
		if _, err := e.issuer.Issue(e.ctx, fromSource(ccReq("not.a.jwt"), "203.0.113.9")); err == nil {
			t.Fatal("garbage accepted")
		}
	}
	e.clock.Advance(RefusalSummaryInterval)
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, en := range e.tokenEntries(t) {
			if en.Action == ActionTokenRefusals {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no summary of the refusals without a further request")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// An agent with its own key cannot keep the token endpoint busy for the
// others: past its rate, its requests are refused (429, slow_down) before
// anything is signed, the refused assertion may be sent again after the
// wait, and other agents go on. (Only failures were limited.)
func TestAnAgentsRequestsAreRateLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	greedy, other := e.register("ai-agent://dev/greedy", []string{"r"}, nil), e.register("ai-agent://dev/other", []string{"r"}, nil)
	burst := DefaultTokenEndpointLimits.RequestsPerAgent.Burst
	for i := range burst {
		if _, err := e.issuer.Issue(e.ctx, fromSource(ccReq(e.assertion(greedy, assertionOpts{})), "192.0.2.20")); err != nil {
			t.Fatalf("request %d within the burst: %v", i, err)
		}
	}
	req := fromSource(ccReq(e.assertion(greedy, assertionOpts{})), "192.0.2.20")
	_, err := e.issuer.Issue(e.ctx, req)
	if !errors.Is(err, ErrTooManyRequests) {
		t.Fatalf("past the agent's rate: %v", err)
	}
	if oe := OAuthErrorFor(err); oe.Status != 429 || oe.Code != "slow_down" || oe.RetryAfter < 1 {
		t.Fatalf("the answer: %+v", oe)
	}
	if _, err := e.issuer.Issue(e.ctx, fromSource(ccReq(e.assertion(other, assertionOpts{})), "192.0.2.20")); err != nil {
		t.Fatalf("another agent from the same address: %v", err)
	}
	e.clock.Advance(time.Second)
	if _, err := e.issuer.Issue(e.ctx, req); err != nil {
		t.Fatalf("the refused assertion after the wait: %v", err)
	}
}

// A captured assertion replayed does not spend its owner's rate of
// requests: the rate is charged once every other check has passed, and
// given back when the assertion turns out to be used. (It was charged as
// soon as the assertion verified: replays from fresh addresses locked the
// agent out.)
func TestReplayedAssertionsDoNotSpendTheAgentsRate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://dev/watched", []string{"r"}, nil)
	captured := e.assertion(a, assertionOpts{})
	if _, err := e.issuer.Issue(e.ctx, fromSource(ccReq(captured), "192.0.2.30")); err != nil {
		t.Fatal(err)
	}
	for i := range DefaultTokenEndpointLimits.RequestsPerAgent.Burst + 10 {
		_, err := e.issuer.Issue(e.ctx, fromSource(ccReq(captured), fmt.Sprintf("198.51.100.%d", i)))
		if !errors.Is(err, ErrReplay) {
			t.Fatalf("replay %d: %v", i, err)
		}
	}
	if _, err := e.issuer.Issue(e.ctx, fromSource(ccReq(e.assertion(a, assertionOpts{})), "192.0.2.30")); err != nil {
		t.Fatalf("the agent after its assertion was replayed: %v", err)
	}
}
