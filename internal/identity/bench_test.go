package identity

import (
	"crypto/ed25519"
	"fmt"
	"math"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkIssueToken measures the token endpoint's work for one
// client_credentials request: verify the agent's assertion against the
// registry, record its jti durably (SQLite, synchronous=FULL), sign the token.
// The agents' own work (signing assertions) is done before the timer starts.
func BenchmarkIssueToken(b *testing.B) {
	e := newEnv(b)
	a := e.register("ai-agent://dev/bench", []string{"r"}, nil)
	// One agent stands for the many a server sees: its own rate of
	// requests is out of the way.
	e.issuer.brake.requests = newKeyedLimiter(Rate{PerSecond: math.MaxInt32, Burst: math.MaxInt32}, 1)
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

// BenchmarkDPoPVerify measures checking one fresh DPoP proof and recording
// it in the replay memory: what an enforcement point does per request
// besides the (cached) token check. Proofs are signed before the timer.
func BenchmarkDPoPVerify(b *testing.B) {
	now := time.Unix(1_800_000_000, 0)
	_, priv := GenerateKey()
	const url = "https://gateway.test/mcp"
	proofs := make([]string, b.N)
	for i := range proofs {
		proofs[i] = proof(b, priv, "POST", url, "", now, fmt.Sprint("p-", i))
	}
	// One key signs every proof, at a fixed time: its rate is not what is
	// measured (with the default, runs past 10,000 proofs are refused).
	d := NewDPoPVerifier(DPoPConfig{Now: func() time.Time { return now }, ProofsPerKey: Rate{PerSecond: 1e9, Burst: 1 << 30}})
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := d.Verify(proofs[i], DPoPCheck{Method: "POST", URL: url}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReplayMemory measures the replay memory alone: the time to
// record one proof id while a million are held, and the heap it takes per
// proof id held (B/proof), as one busy agent fills it.
func BenchmarkReplayMemory(b *testing.B) {
	const held = 1_000_000
	now := time.Unix(1_800_000_000, 0)
	jkt := Thumbprint(GenerateKeyPublic())
	ids := make([]string, held+b.N)
	for i := range ids {
		ids[i] = newJTI()
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := replayCacheFor(2 * (held + b.N))
	for i := range held {
		// A second's worth of proofs per bucket, as 10,000 proofs a second would make.
		t := now.Add(time.Duration(i/10_000) * time.Second)
		if err := c.UseFor(jkt, ids[i], t.Add(70*time.Second), now); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ResetTimer()
	for i := range b.N {
		if err := c.UseFor(jkt, ids[held+i], now.Add(70*time.Second), now); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/held, "B/proof")
	runtime.KeepAlive(c)
}

// GenerateKeyPublic is a fresh public key.
func GenerateKeyPublic() ed25519.PublicKey {
	pub, _ := GenerateKey()
	return pub
}

// BenchmarkAssertionRefusal measures refusing a client assertion signed by
// the wrong key, for an agent that exists and for one that does not (once
// remembered as unknown): the two must cost the same, or their difference
// tells an attacker which agent ids exist. one_source_flood is the known
// agent's case with every request from one address, as a flood sends them.
func BenchmarkAssertionRefusal(b *testing.B) {
	for _, name := range []string{"known_agent", "unknown_agent", "one_source_flood"} {
		b.Run(name, func(b *testing.B) {
			e := newEnv(b)
			a := e.register("ai-agent://dev/known", []string{"r"}, nil)
			_, stranger := GenerateKey()
			target := a
			if name == "unknown_agent" {
				target = testAgent{id: "ai-agent://dev/nobody", priv: stranger}
			}
			asserts := make([]string, b.N)
			for i := range asserts {
				asserts[i] = e.assertion(target, assertionOpts{key: stranger, kid: "-"})
			}
			// Remember the unknown id as unknown first, as a probing client would have it.
			e.issuer.Issue(e.ctx, ccReq(e.assertion(target, assertionOpts{key: stranger, kid: "-"})))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				r := withSource(ccReq(asserts[i]), i)
				if name == "one_source_flood" {
					r = withSource(r, 0)
				}
				if _, err := e.issuer.Issue(e.ctx, r); err == nil {
					b.Fatal("accepted")
				}
			}
		})
	}
}
