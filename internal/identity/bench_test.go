package identity

import (
	"sync/atomic"
	"testing"
)

// BenchmarkIssueToken measures the token endpoint's work for one
// client_credentials request: verify the agent's assertion against the
// registry, record its jti durably (SQLite, synchronous=FULL), sign the token.
// The agents' own work (signing assertions) is done before the timer starts.
func BenchmarkIssueToken(b *testing.B) {
	e := newEnv(b)
	a := e.register("ai-agent://dev/bench", []string{"r"}, nil)
	assertions := make([]string, b.N)
	for i := range assertions {
		assertions[i] = e.assertion(a, assertionOpts{})
	}
	var next atomic.Int64
	// Many agents at once, as a server sees them: concurrent requests share fsyncs.
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			if _, err := e.issuer.Issue(e.ctx, ccReq(assertions[i])); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkVerifyWarm measures verifying a token seen before: the signature
// check is cached; expiry, revocation, status and key binding are checked.
func BenchmarkVerifyWarm(b *testing.B) {
	e := newEnv(b)
	a := e.register("ai-agent://dev/bench", []string{"r"}, nil)
	tok := e.token(a).AccessToken
	if _, err := e.ver.Verify(e.ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.ver.Verify(e.ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyWarmParallel is BenchmarkVerifyWarm from every core at once.
func BenchmarkVerifyWarmParallel(b *testing.B) {
	e := newEnv(b)
	a := e.register("ai-agent://dev/bench", []string{"r"}, nil)
	tok := e.token(a).AccessToken
	if _, err := e.ver.Verify(e.ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.ver.Verify(e.ctx, tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkVerifyCold measures the first verification of a token: parse,
// Ed25519 signature check and all the live checks.
func BenchmarkVerifyCold(b *testing.B) {
	e := newEnv(b)
	a := e.register("ai-agent://dev/bench", []string{"r"}, nil)
	tok := e.token(a).AccessToken
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		e.ver.cache = newTokenCache(1)
		if _, err := e.ver.Verify(e.ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}
