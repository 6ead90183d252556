package identity

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func TestDPoPVerifier(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	clk := &clock{t: now}
	pub, priv := GenerateKey()
	jkt := Thumbprint(pub)
	const url = "https://pep.test/v1/call"
	const token = "access-token"

	// signWith makes a proof with full control of header and claims.
	signWith := func(key ed25519.PrivateKey, embed bool, typ string, claims map[string]any) string {
		opts := &jose.SignerOptions{EmbedJWK: embed}
		if typ != "" {
			opts = opts.WithType(jose.ContentType(typ))
		}
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: key}, opts)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.Signed(s).Claims(claims).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	claims := func(jti string, edit func(map[string]any)) map[string]any {
		c := map[string]any{"jti": jti, "htm": "POST", "htu": url, "iat": now.Unix(), "ath": AccessTokenHash(token)}
		if edit != nil {
			edit(c)
		}
		return c
	}
	check := DPoPCheck{Method: "POST", URL: url, AccessToken: token, JKT: jkt}

	cases := []struct {
		name  string
		proof string
		check DPoPCheck
		want  error // nil: accepted
	}{
		{"valid", signWith(priv, true, "dpop+jwt", claims("ok-1", nil)), check, nil},
		{"htu with query, default port and upper-case host", signWith(priv, true, "dpop+jwt", claims("ok-2", func(c map[string]any) {
			c["htu"] = "https://PEP.test:443/v1/call"
		})), DPoPCheck{Method: "POST", URL: url + "?x=1#f", AccessToken: token, JKT: jkt}, nil},
		{"no token to bind", signWith(priv, true, "dpop+jwt", claims("ok-3", func(c map[string]any) { delete(c, "ath") })),
			DPoPCheck{Method: "POST", URL: url}, nil},
		{"wrong typ", signWith(priv, true, "JWT", claims("t", nil)), check, ErrDPoP},
		{"no embedded jwk", signWith(priv, false, "dpop+jwt", claims("j", nil)), check, ErrDPoP},
		{"key not cnf.jkt", signWith(func() ed25519.PrivateKey { _, k := GenerateKey(); return k }(), true, "dpop+jwt", claims("k", nil)), check, ErrDPoPKeyMismatch},
		{"htm mismatch", signWith(priv, true, "dpop+jwt", claims("m", func(c map[string]any) { c["htm"] = "GET" })), check, ErrDPoP},
		{"htm case differs", signWith(priv, true, "dpop+jwt", claims("m2", func(c map[string]any) { c["htm"] = "post" })), check, ErrDPoP},
		{"htu other path", signWith(priv, true, "dpop+jwt", claims("u", func(c map[string]any) { c["htu"] = "https://pep.test/v1/other" })), check, ErrDPoP},
		{"htu other scheme", signWith(priv, true, "dpop+jwt", claims("u2", func(c map[string]any) { c["htu"] = "http://pep.test/v1/call" })), check, ErrDPoP},
		{"htu relative", signWith(priv, true, "dpop+jwt", claims("u3", func(c map[string]any) { c["htu"] = "/v1/call" })), check, ErrDPoP},
		{"iat too old", signWith(priv, true, "dpop+jwt", claims("i", func(c map[string]any) { c["iat"] = now.Add(-61 * time.Second).Unix() })), check, ErrExpired},
		{"iat in the future", signWith(priv, true, "dpop+jwt", claims("i2", func(c map[string]any) { c["iat"] = now.Add(time.Minute).Unix() })), check, ErrNotYetValid},
		{"iat missing", signWith(priv, true, "dpop+jwt", claims("i3", func(c map[string]any) { delete(c, "iat") })), check, ErrDPoP},
		{"ath of another token", signWith(priv, true, "dpop+jwt", claims("a", func(c map[string]any) { c["ath"] = AccessTokenHash("other") })), check, ErrDPoP},
		{"ath missing", signWith(priv, true, "dpop+jwt", claims("a2", func(c map[string]any) { delete(c, "ath") })), check, ErrDPoP},
		{"jti missing", signWith(priv, true, "dpop+jwt", claims("", nil)), check, ErrDPoP},
		{"HS256", hs256(t, pub, claims("h", nil), map[jose.HeaderKey]any{"typ": "dpop+jwt"}), check, ErrAlgorithm},
		{"garbage", "a.b.c", check, ErrDPoP},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			d := NewDPoPVerifier(DPoPConfig{Now: clk.Now})
			_, err := d.Verify(c.proof, c.check)
			if c.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if _, err := d.Verify(c.proof, c.check); !errors.Is(err, ErrReplay) {
					t.Fatalf("second use: %v, want ErrReplay", err)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if d.replay.Len() != 0 {
				t.Fatal("a refused proof was recorded")
			}
		})
	}
}

func TestReplayCacheBounded(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	c := NewReplayCache(3)
	for i := range 3 {
		if err := c.Use(fmt.Sprint(i), now.Add(time.Minute), now); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Use("3", now.Add(time.Minute), now); !errors.Is(err, ErrReplayCacheIsFull) {
		t.Fatalf("full cache: %v, want ErrReplayCacheIsFull", err)
	}
	if err := c.Use("1", now.Add(time.Minute), now); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay: %v", err)
	}
	if st := c.Stats(); st.RefusedFull != 1 || st.Remembered != 3 || st.Capacity != 3 {
		t.Fatalf("stats %+v", st)
	}
	// Once the values expire they make room, and may not be confused with replays.
	later := now.Add(2 * time.Minute)
	if err := c.Use("3", later.Add(time.Minute), later); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if err := c.Use("1", later.Add(time.Minute), later); err != nil {
		t.Fatalf("an expired value reused after its proof could no longer be valid: %v", err)
	}
	if c.Len() != 2 {
		t.Fatalf("len %d", c.Len())
	}
	// The same value under two owners is two values.
	o := NewReplayCache(10)
	if err := o.UseFor("a", "1", now.Add(time.Minute), now); err != nil {
		t.Fatal(err)
	}
	if err := o.UseFor("b", "1", now.Add(time.Minute), now); err != nil {
		t.Fatal(err)
	}
	if err := o.UseFor("a", "1", now.Add(time.Minute), now); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay under its owner: %v", err)
	}
	// The owner and the value are told apart: "ab"+"c" is not "a"+"bc".
	if err := o.UseFor("ab", "c", now.Add(time.Minute), now); err != nil {
		t.Fatal(err)
	}
	if err := o.UseFor("a", "bc", now.Add(time.Minute), now); err != nil {
		t.Fatalf("another owner and value with the same concatenation: %v", err)
	}
}

// TestReplayCacheRemembersUntilExpiry checks the edges of a value's memory,
// with the clock moving in steps, jumping, and going back.
func TestReplayCacheRemembersUntilExpiry(t *testing.T) {
	t.Parallel()
	start := time.Unix(1_800_000_000, 0)
	cases := []struct {
		name    string
		expires time.Duration // after start
		at      time.Duration // when the value is presented again
		replay  bool
	}{
		{"just before expiry", 70 * time.Second, 69*time.Second + 999*time.Millisecond, true},
		{"at expiry", 70 * time.Second, 70 * time.Second, true},
		{"within the second of expiry", 70 * time.Second, 70*time.Second + 900*time.Millisecond, true},
		{"expiry in the middle of a second", 70*time.Second + 300*time.Millisecond, 70*time.Second + 400*time.Millisecond, true},
		{"a second after expiry", 70 * time.Second, 71 * time.Second, false},
		{"an hour later", 70 * time.Second, time.Hour, false},
		{"the clock went back", 70 * time.Second, -time.Hour, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := NewReplayCache(100)
			if err := c.Use("v", start.Add(tc.expires), start); err != nil {
				t.Fatal(err)
			}
			// Other values on the way, so that sweeping has work to do.
			for s := time.Duration(0); s < tc.at && s < 3*time.Minute; s += 10 * time.Second {
				if err := c.Use(fmt.Sprint("other-", s), start.Add(s+time.Second), start.Add(s)); err != nil {
					t.Fatal(err)
				}
			}
			err := c.Use("v", start.Add(tc.at+time.Minute), start.Add(tc.at))
			if tc.replay != errors.Is(err, ErrReplay) {
				t.Fatalf("presented again %s after the start: %v, want a replay: %t", tc.at, err, tc.replay)
			}
		})
	}
}

// TestOneKeyAtHighRateStaysInsideReplayMemory is the regression test of a
// busy agent refused once its share of the replay memory was full: one key
// presents 3,000 proofs a second (over twice the MCP gateway's whole
// measured throughput), every second, for two and a half times the proof
// lifetime (max age + 2 x skew, 120 s), with the server's default settings. None may
// be refused, and every one is still refused as a replay while it is valid.
// It drives the replay memory and the per-key rate directly: the same
// volume of signed proofs would take minutes of signing and verifying.
func TestOneKeyAtHighRateStaysInsideReplayMemory(t *testing.T) {
	t.Parallel()
	start := time.Unix(1_800_000_000, 0)
	clk := &clock{t: start}
	d := NewDPoPVerifier(DPoPConfig{ClockSkew: 30 * time.Second, Now: clk.Now}) // the server's default skew
	lifetime := d.maxAge + 2*d.skew
	const perSecond = 3_000
	const jkt = "the-busy-agents-key-thumbprint"
	seconds := int(5 * lifetime / 2 / time.Second)
	for s := range seconds {
		for i := range perSecond {
			clk.t = start.Add(time.Duration(s)*time.Second + time.Duration(i)*time.Second/perSecond)
			iat := clk.t.Truncate(time.Second)
			if err := d.record(&DPoPProof{JKT: jkt, ID: fmt.Sprint(s, "-", i), IssuedAt: iat}); err != nil {
				t.Fatalf("proof %d of second %d refused (%d remembered): %v", i, s, d.replay.Len(), err)
			}
		}
		// A proof of the second before is still remembered.
		if s > 0 {
			err := d.record(&DPoPProof{JKT: jkt, ID: fmt.Sprint(s-1, "-", 0), IssuedAt: clk.t.Truncate(time.Second).Add(-time.Second)})
			if !errors.Is(err, ErrReplay) {
				t.Fatalf("second %d: a proof of the second before presented again: %v", s, err)
			}
		}
	}
	st := d.Stats()
	if st.RefusedFull != 0 || st.RefusedRate != 0 {
		t.Fatalf("refusals: %+v", st)
	}
	// Counted: a lifetime of proofs, and those of the window of the replay
	// memory not yet past (replayWindow seconds at most).
	if max := int(lifetime/time.Second+2+replayWindow) * perSecond; st.Remembered > max {
		t.Fatalf("%d proof ids remembered; a lifetime of proofs and a window is at most %d", st.Remembered, max)
	}
}

// TestProofRateAnswersItsOwnError: past its key's rate, a proof is refused
// with ErrProofRateExceeded and a time to wait, not as an invalid proof or
// a full memory; the refused proof is not spent, other keys are not held
// up, and the refusals are counted.
func TestProofRateAnswersItsOwnError(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	clk := &clock{t: now}
	d := NewDPoPVerifier(DPoPConfig{Now: clk.Now, ProofsPerKey: Rate{PerSecond: 10, Burst: 10}})
	_, busy := GenerateKey()
	_, other := GenerateKey()
	const url = "https://pep.test/v1/call"
	for i := range 10 {
		if _, err := d.Verify(proof(t, busy, "POST", url, "", now, fmt.Sprint("b", i)), DPoPCheck{Method: "POST", URL: url}); err != nil {
			t.Fatalf("proof %d within the rate: %v", i, err)
		}
	}
	over := proof(t, busy, "POST", url, "", now, "b-over")
	_, err := d.Verify(over, DPoPCheck{Method: "POST", URL: url})
	var rl *RateLimitError
	if !errors.Is(err, ErrProofRateExceeded) || !errors.As(err, &rl) || errors.Is(err, ErrDPoP) || errors.Is(err, ErrReplayCacheIsFull) {
		t.Fatalf("past the rate: %v, want ErrProofRateExceeded alone", err)
	}
	if rl.RetryAfter <= 0 || rl.RetryAfter > 100*time.Millisecond || rl.RetryAfterSeconds() != 1 {
		t.Fatalf("retry after %s (%d s), want 100ms (1 s)", rl.RetryAfter, rl.RetryAfterSeconds())
	}
	if _, err := d.Verify(proof(t, other, "POST", url, "", now, "o"), DPoPCheck{Method: "POST", URL: url}); err != nil {
		t.Fatalf("another key: %v", err)
	}
	clk.Advance(rl.RetryAfter)
	if _, err := d.Verify(over, DPoPCheck{Method: "POST", URL: url}); err != nil {
		t.Fatalf("the refused proof, after the wait: %v", err)
	}
	if st := d.Stats(); st.RefusedRate != 1 || st.RefusedFull != 0 || st.Remembered != 12 {
		t.Fatalf("stats %+v", st)
	}
}

// TestBusyAgentThroughVerifierLongerThanProofLifetime is the regression
// test at the verifier: one agent's token with signed proofs, 25 a second
// for twice the proof lifetime, against a replay memory of 8,000. Each key
// was allowed a sixteenth of the memory (500 proofs, full after 20 s) and
// then refused as "state unavailable".
func TestBusyAgentThroughVerifierLongerThanProofLifetime(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://prod/busy", []string{"r"}, nil)
	v, err := NewVerifier(VerifierConfig{Issuer: testIssuer, Audiences: []string{"warden"}, TrustDomains: testDomains,
		ClockSkew: 30 * time.Second, DPoP: DPoPConfig{ReplayCacheSize: 8_000, ClockSkew: 5 * time.Second}, Now: e.clock.Now}, e.view)
	if err != nil {
		t.Fatal(err)
	}
	const url = "https://gateway.test/mcp"
	const perSecond = 25
	var tok string
	for s := range 140 {
		if s%60 == 0 {
			tok = e.token(a).AccessToken
		}
		for i := range perSecond {
			p := proof(t, a.priv, "POST", url, tok, e.clock.Now(), fmt.Sprint(s, "-", i))
			if _, err := v.VerifyRequest(e.ctx, Request{Token: tok, DPoP: p, Method: "POST", URL: url}); err != nil {
				t.Fatalf("second %d, proof %d: %v (stats %+v)", s, i, err, v.DPoPStats())
			}
		}
		e.clock.Advance(time.Second)
	}
	if st := v.DPoPStats(); st.RefusedFull != 0 || st.RefusedRate != 0 || st.Remembered > (72+replayWindow)*perSecond {
		t.Fatalf("stats %+v", st)
	}
}

// A captured proof replayed costs its key nothing: the replay is refused
// as such, before the key's rate is charged, so an attacker replaying it
// cannot exhaust the owner's proofs.
func TestReplayDoesNotSpendTheKeysRate(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	clk := &clock{t: now}
	d := NewDPoPVerifier(DPoPConfig{Now: clk.Now, ProofsPerKey: Rate{PerSecond: 1, Burst: 2}})
	_, key := GenerateKey()
	const url = "https://pep.test/v1/call"
	captured := proof(t, key, "POST", url, "", now, "p1")
	if _, err := d.Verify(captured, DPoPCheck{Method: "POST", URL: url}); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := d.Verify(captured, DPoPCheck{Method: "POST", URL: url}); !errors.Is(err, ErrReplay) {
			t.Fatalf("a replay: %v, want ErrReplay", err)
		}
	}
	if _, err := d.Verify(proof(t, key, "POST", url, "", now, "p2"), DPoPCheck{Method: "POST", URL: url}); err != nil {
		t.Fatalf("the owner's next proof, within its burst: %v", err)
	}
}

// The replay memory does not grow under steady use: 716 proofs a second
// (the soak's rate), each remembered for 122 s, for 3,000 s. One map of
// every value, values deleted as they expired, grew from 3.6 to 5.9 MB
// here after its first lifetime of proofs (the map keeps deleted slots,
// and grows past them); the hour-long soak showed it as the live heap
// rising about 1.6 MB. Not parallel: it reads the heap.
func TestReplayMemoryFlatUnderChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000,000 proofs")
	}
	start := time.Unix(1_800_000_000, 0)
	c := NewReplayCache(DefaultReplayCapacity)
	const perSecond = 716
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	var early uint64
	for s := range 3000 {
		now := start.Add(time.Duration(s) * time.Second)
		for i := range perSecond {
			if err := c.UseFor("k", fmt.Sprint(s, "-", i), now.Add(122*time.Second), now); err != nil {
				t.Fatal(err)
			}
		}
		if s == 130 {
			early = heap()
		}
	}
	late := heap()
	runtime.KeepAlive(c)
	if n := len(c.windows); n > 122/replayWindow+2 {
		t.Errorf("%d windows held, want at most %d", n, 122/replayWindow+2)
	}
	t.Logf("heap after 130 s %.2f MB, after 3,000 s %.2f MB", float64(early)/1e6, float64(late)/1e6)
	if late > early+early/10 {
		t.Errorf("the heap grew from %.2f MB to %.2f MB under a steady load", float64(early)/1e6, float64(late)/1e6)
	}
}

// A value presented again after its expiry, before its window is past,
// is accepted and counted once: counted twice, the memory would lose a
// place for good each time.
func TestReplayCacheCountsAValueOnce(t *testing.T) {
	t.Parallel()
	start := time.Unix(1_800_000_000, 0) // the first second of a window
	c := NewReplayCache(10)
	if err := c.Use("v", start.Add(time.Second), start); err != nil {
		t.Fatal(err)
	}
	later := start.Add(3 * time.Second)
	if err := c.Use("v", later.Add(2*time.Second), later); err != nil {
		t.Fatalf("presented again after its expiry: %v", err)
	}
	if n := c.Len(); n != 1 {
		t.Fatalf("counted %d, want 1", n)
	}
	if err := c.Use("v", later.Add(2*time.Second), later); !errors.Is(err, ErrReplay) {
		t.Fatalf("presented a third time within its memory: %v", err)
	}
	end := start.Add(replayWindow * time.Second)
	if err := c.Use("w", end.Add(time.Second), end); err != nil || c.Len() != 1 {
		t.Fatalf("after the window: %v, counted %d, want 1", err, c.Len())
	}
}
