// Package storetest is the conformance suite every store backend must pass:
// one set of behaviours, run against SQLite and PostgreSQL alike.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/store"
)

// Factory opens a fresh, empty store for one test and closes it when the test ends.
type Factory func(t *testing.T) store.Store

// Run runs the whole suite against the stores that open makes.
func Run(t *testing.T, open Factory) {
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"agent round trip", testAgentRoundTrip},
		{"agent create conflict", testAgentConflict},
		{"a key belongs to one agent", testKeyBelongsToOneAgent},
		{"agent not found", testAgentNotFound},
		{"agent list filters and pages", testAgentList},
		{"agent update", testAgentUpdate},
		{"agent update aborted by fn", testAgentUpdateAborted},
		{"agent updates do not lose writes", testAgentConcurrentUpdates},
		{"signing key rotation", testSigningKeys},
		{"token revocation", testRevocations},
		{"single use values", testMarkUsed},
		{"single use under contention", testMarkUsedConcurrent},
		{"meta", testMeta},
		{"events", testEvents},
		{"change feed", testChangeFeed},
		{"policy version round trip", testPolicyVersionRoundTrip},
		{"policy version conflict", testPolicyVersionConflict},
		{"policy not found", testPolicyNotFound},
		{"policy versions list and page", testPolicyVersionList},
		{"policy activation", testPolicyActivate},
		{"policy rollback is a stack", testPolicyRollback},
		{"policy shadow", testPolicyShadow},
		{"policy activations list", testPolicyActivations},
		{"policy and enforcement point mutations record events", testPolicyEvents},
		{"policy and enforcement point changes are announced", testPolicyChangeFeed},
		{"concurrent policy activations: one wins", testPolicyConcurrentActivations},
		{"enforcement point registration", testEnforcementPointRegister},
		{"enforcement point revocation and replacement", testEnforcementPointRevoke},
		{"concurrent enforcement point registrations: one wins", testEnforcementPointConcurrent},
		{"taints: add, touch, index, list", testTaints},
		{"taints: clear by scope, with an event", testTaintsClear},
		{"taints: expire, with events, announced", testTaintsExpire},
		{"incidents: one open per agent, updated with events", testIncidents},
		{"incidents: concurrent openings make one", testIncidentsConcurrent},
		{"approvals: one live per digest, updated with events, final once done", testApprovals},
		{"approvals: consumed once under concurrency", testApprovalsConsumedOnce},
		{"humans: sign in, sessions, revocation", testHumans},
		{"meta: swapped with its event, or neither", testMetaSwapWithEvent},
		{"grants: stored, announced, final once ended", testGrants},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 123456000, time.UTC)

func event(action, target string) store.Event {
	return store.Event{Time: t0, Actor: "admin:test", Action: action, Target: target, Detail: json.RawMessage(`{"k":"v"}`)}
}

func sampleAgent(id string) store.Agent {
	return store.Agent{
		ID:          id,
		TrustDomain: "prod",
		Roles:       []string{"trader", "reader"},
		Owner:       "team-quant",
		Attributes:  map[string]string{"env": "prod", "delegate_to": "ai-agent://prod/*"},
		Status:      store.StatusActive,
		Keys: []store.AgentKey{{
			KID:     "kid:" + id, // keys belong to one agent each
			JWK:     json.RawMessage(`{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`),
			AddedAt: t0,
		}},
		CreatedAt: t0,
		UpdatedAt: t0,
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func testAgentRoundTrip(t *testing.T, s store.Store) {
	a := sampleAgent("ai-agent://prod/finance/trader")
	a.TokensRevokedAt = t0.Add(time.Second)
	a.Keys = append(a.Keys, store.AgentKey{KID: "kid-2", JWK: json.RawMessage(`{"kty":"OKP","crv":"Ed25519","x":"AAAA"}`),
		AddedAt: t0.Add(time.Minute), RetireAt: t0.Add(time.Hour)})
	if err := s.CreateAgent(ctx(t), a, event("agent.register", a.ID)); err != nil {
		t.Fatal(err)
	}
	got, err := s.Agent(ctx(t), a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, a) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, a)
	}
	// Empty collections come back empty, not nil-vs-empty surprises for JSON.
	b := store.Agent{ID: "ai-agent://prod/bare", TrustDomain: "prod", Owner: "o", Status: store.StatusDisabled, CreatedAt: t0, UpdatedAt: t0}
	if err := s.CreateAgent(ctx(t), b, event("agent.register", b.ID)); err != nil {
		t.Fatal(err)
	}
	got, err = s.Agent(ctx(t), b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Roles) != 0 || len(got.Attributes) != 0 || len(got.Keys) != 0 || !got.TokensRevokedAt.IsZero() || got.Status != store.StatusDisabled {
		t.Fatalf("bare agent came back as %+v", got)
	}
}

func testAgentConflict(t *testing.T, s store.Store) {
	a := sampleAgent("ai-agent://prod/a")
	if err := s.CreateAgent(ctx(t), a, event("agent.register", a.ID)); err != nil {
		t.Fatal(err)
	}
	b := a
	b.Owner = "someone-else"
	if err := s.CreateAgent(ctx(t), b, event("agent.register", a.ID)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second create: %v, want ErrConflict", err)
	}
	got, _ := s.Agent(ctx(t), a.ID)
	if got.Owner != a.Owner {
		t.Fatalf("failed create changed the agent: owner %q", got.Owner)
	}
	evs, _ := s.Events(ctx(t), store.EventFilter{})
	if len(evs) != 1 {
		t.Fatalf("failed create left an event: %d events", len(evs))
	}
}

func testKeyBelongsToOneAgent(t *testing.T, s store.Store) {
	a := sampleAgent("ai-agent://prod/a")
	if err := s.CreateAgent(ctx(t), a, event("agent.register", a.ID)); err != nil {
		t.Fatal(err)
	}
	b := sampleAgent("ai-agent://prod/b")
	b.Keys = a.Keys
	if err := s.CreateAgent(ctx(t), b, event("agent.register", b.ID)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a second agent with a's key: %v, want ErrConflict", err)
	}
	if _, err := s.Agent(ctx(t), b.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the refused agent was stored: %v", err)
	}
	b.Keys = []store.AgentKey{{KID: "kid-b", JWK: json.RawMessage(`{}`), AddedAt: t0}}
	if err := s.CreateAgent(ctx(t), b, event("agent.register", b.ID)); err != nil {
		t.Fatal(err)
	}
	_, err := s.UpdateAgent(ctx(t), b.ID, event("agent.rotate_key", b.ID), func(x *store.Agent) error {
		x.Keys = append(x.Keys, a.Keys[0])
		return nil
	})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("rotating to a's key: %v, want ErrConflict", err)
	}
	// A key is never given out again, not even after its agent dropped it.
	if _, err := s.UpdateAgent(ctx(t), a.ID, event("agent.update", a.ID), func(x *store.Agent) error {
		x.Keys = nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{a.ID, b.ID} {
		_, err := s.UpdateAgent(ctx(t), id, event("agent.rotate_key", id), func(x *store.Agent) error {
			x.Keys = append(x.Keys, a.Keys[0])
			return nil
		})
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("%s taking a dropped key: %v, want ErrConflict", id, err)
		}
	}
	// Updates that keep an agent's keys do not trip over its own.
	if _, err := s.UpdateAgent(ctx(t), b.ID, event("agent.status", b.ID), func(x *store.Agent) error {
		x.Status = store.StatusRestricted
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func testAgentNotFound(t *testing.T, s store.Store) {
	if _, err := s.Agent(ctx(t), "ai-agent://prod/nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Agent: %v, want ErrNotFound", err)
	}
	_, err := s.UpdateAgent(ctx(t), "ai-agent://prod/nobody", event("agent.disable", "x"), func(a *store.Agent) error { return nil })
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateAgent: %v, want ErrNotFound", err)
	}
}

func testAgentList(t *testing.T, s store.Store) {
	ids := []string{"ai-agent://prod/b", "ai-agent://prod/a", "ai-agent://prod/a.x", "ai-agent://prod/a/x", "ai-agent://prod/a-x", "ai-agent://dev/z"}
	for _, id := range ids {
		a := sampleAgent(id)
		if id == "ai-agent://dev/z" {
			a.TrustDomain = "dev"
		}
		if id == "ai-agent://prod/b" {
			a.Status = store.StatusQuarantined
		}
		if err := s.CreateAgent(ctx(t), a, event("agent.register", id)); err != nil {
			t.Fatal(err)
		}
	}
	list := func(f store.AgentFilter) []string {
		as, err := s.Agents(ctx(t), f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range as {
			out = append(out, a.ID)
		}
		return out
	}
	// Byte order, the same on every backend.
	all := []string{"ai-agent://dev/z", "ai-agent://prod/a", "ai-agent://prod/a-x", "ai-agent://prod/a.x", "ai-agent://prod/a/x", "ai-agent://prod/b"}
	if got := list(store.AgentFilter{}); !reflect.DeepEqual(got, all) {
		t.Fatalf("all: %q", got)
	}
	if got := list(store.AgentFilter{TrustDomain: "dev"}); !reflect.DeepEqual(got, all[:1]) {
		t.Fatalf("trust domain: %q", got)
	}
	if got := list(store.AgentFilter{Status: store.StatusQuarantined}); !reflect.DeepEqual(got, all[5:]) {
		t.Fatalf("status: %q", got)
	}
	var paged []string
	for after := ""; ; {
		page := list(store.AgentFilter{After: after, Limit: 4})
		paged = append(paged, page...)
		if len(page) < 4 {
			break
		}
		after = page[len(page)-1]
	}
	if !reflect.DeepEqual(paged, all) {
		t.Fatalf("paged: %q", paged)
	}
}

func testAgentUpdate(t *testing.T, s store.Store) {
	a := sampleAgent("ai-agent://prod/u")
	if err := s.CreateAgent(ctx(t), a, event("agent.register", a.ID)); err != nil {
		t.Fatal(err)
	}
	later := t0.Add(time.Hour)
	got, err := s.UpdateAgent(ctx(t), a.ID, event("agent.disable", a.ID), func(a *store.Agent) error {
		a.Status = store.StatusDisabled
		a.TokensRevokedAt = later
		a.Keys[0].RetireAt = later
		a.UpdatedAt = later
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Agent(ctx(t), a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, again) || again.Status != store.StatusDisabled || !again.TokensRevokedAt.Equal(later) ||
		!again.Keys[0].RetireAt.Equal(later) || !again.UpdatedAt.Equal(later) || !again.CreatedAt.Equal(t0) {
		t.Fatalf("after update: %+v", again)
	}
	evs, err := s.Events(ctx(t), store.EventFilter{Target: a.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[1].Action != "agent.disable" {
		t.Fatalf("events: %+v", evs)
	}
	_, err = s.UpdateAgent(ctx(t), a.ID, event("x", a.ID), func(a *store.Agent) error { a.ID = "ai-agent://prod/other"; return nil })
	if err == nil {
		t.Fatal("changing the id was allowed")
	}
}

func testAgentUpdateAborted(t *testing.T, s store.Store) {
	a := sampleAgent("ai-agent://prod/abort")
	if err := s.CreateAgent(ctx(t), a, event("agent.register", a.ID)); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("refused")
	_, err := s.UpdateAgent(ctx(t), a.ID, event("agent.disable", a.ID), func(a *store.Agent) error {
		a.Status = store.StatusDisabled
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("UpdateAgent: %v, want the fn's error", err)
	}
	got, _ := s.Agent(ctx(t), a.ID)
	if got.Status != store.StatusActive {
		t.Fatal("an aborted update changed the agent")
	}
	if evs, _ := s.Events(ctx(t), store.EventFilter{}); len(evs) != 1 {
		t.Fatalf("an aborted update left an event: %d events", len(evs))
	}
}

func testAgentConcurrentUpdates(t *testing.T, s store.Store) {
	a := sampleAgent("ai-agent://prod/counter")
	a.Roles = nil
	if err := s.CreateAgent(ctx(t), a, event("agent.register", a.ID)); err != nil {
		t.Fatal(err)
	}
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.UpdateAgent(ctx(t), a.ID, event("agent.update", a.ID), func(a *store.Agent) error {
				a.Roles = append(a.Roles, fmt.Sprintf("r%d", i))
				return nil
			})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, _ := s.Agent(ctx(t), a.ID)
	if len(got.Roles) != n {
		t.Fatalf("%d concurrent updates left %d roles: a write was lost", n, len(got.Roles))
	}
}

func testSigningKeys(t *testing.T, s store.Store) {
	k1 := store.SigningKey{KID: "k1", Alg: "EdDSA", PublicJWK: []byte(`{"kid":"k1"}`), Sealed: []byte{1, 2, 3}, CreatedAt: t0}
	k2 := store.SigningKey{KID: "k2", Alg: "EdDSA", PublicJWK: []byte(`{"kid":"k2"}`), Sealed: []byte{4, 5, 6}, CreatedAt: t0.Add(time.Minute)}
	if err := s.RotateSigningKey(ctx(t), "k-other", k1, time.Time{}, event("keys.rotate", "k1")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("rotate from a wrong key: %v, want ErrConflict", err)
	}
	if err := s.RotateSigningKey(ctx(t), "", k1, time.Time{}, event("keys.rotate", "k1")); err != nil {
		t.Fatal(err)
	}
	if err := s.RotateSigningKey(ctx(t), "", k2, time.Time{}, event("keys.rotate", "k2")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second first key: %v, want ErrConflict", err)
	}
	retire := t0.Add(20 * time.Minute)
	if err := s.RotateSigningKey(ctx(t), "k1", k2, retire, event("keys.rotate", "k2")); err != nil {
		t.Fatal(err)
	}
	keys, err := s.SigningKeys(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []store.SigningKey{k2, k1}
	want[0].Active = true
	want[1].RetireAt = retire
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("keys:\n got %+v\nwant %+v", keys, want)
	}
	// A rotation that retires sooner brings every retiring key forward with it.
	k3 := store.SigningKey{KID: "k3", Alg: "EdDSA", PublicJWK: []byte(`{"kid":"k3"}`), Sealed: []byte{7}, CreatedAt: t0.Add(2 * time.Minute)}
	sooner := t0.Add(3 * time.Minute)
	if err := s.RotateSigningKey(ctx(t), "k2", k3, sooner, event("keys.rotate", "k3")); err != nil {
		t.Fatal(err)
	}
	keys, _ = s.SigningKeys(ctx(t))
	for _, k := range keys {
		if !k.Active && !k.RetireAt.Equal(sooner) {
			t.Fatalf("key %s retires at %s, want %s", k.KID, k.RetireAt, sooner)
		}
	}
	retire = sooner
	if n, err := s.DeleteSigningKeys(ctx(t), retire); err != nil || n != 0 {
		t.Fatalf("delete at the retire time: %d, %v", n, err)
	}
	if n, err := s.DeleteSigningKeys(ctx(t), retire.Add(time.Second)); err != nil || n != 2 {
		t.Fatalf("delete after the retire time: %d, %v", n, err)
	}
	keys, _ = s.SigningKeys(ctx(t))
	if len(keys) != 1 || keys[0].KID != "k3" || !keys[0].Active {
		t.Fatalf("after delete: %+v", keys)
	}
}

func testRevocations(t *testing.T, s store.Store) {
	rt := store.RevokedToken{JTI: "j1", AgentID: "ai-agent://prod/a", ExpiresAt: t0.Add(5 * time.Minute), RevokedAt: t0}
	old := store.RevokedToken{JTI: "j0", AgentID: "ai-agent://prod/a", ExpiresAt: t0.Add(-time.Minute), RevokedAt: t0}
	for _, r := range []store.RevokedToken{rt, rt, old} {
		if err := s.RevokeToken(ctx(t), r, event("token.revoke", r.JTI)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.RevokedTokens(ctx(t), t0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []store.RevokedToken{rt}) {
		t.Fatalf("live revocations: %+v", got)
	}
	if err := s.Prune(ctx(t), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.RevokedTokens(ctx(t), time.Time{}); len(got) != 0 {
		t.Fatalf("after prune: %+v", got)
	}
}

func testMarkUsed(t *testing.T, s store.Store) {
	exp := t0.Add(time.Minute)
	if err := s.MarkUsed(ctx(t), "assertion:a", "jti-1", exp); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkUsed(ctx(t), "assertion:a", "jti-1", exp); !errors.Is(err, store.ErrReplay) {
		t.Fatalf("second use: %v, want ErrReplay", err)
	}
	if err := s.MarkUsed(ctx(t), "assertion:b", "jti-1", exp); err != nil {
		t.Fatalf("same value in another scope: %v", err)
	}
	if err := s.Prune(ctx(t), exp); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkUsed(ctx(t), "assertion:a", "jti-1", exp); !errors.Is(err, store.ErrReplay) {
		t.Fatalf("pruned at its own expiry (must survive until after): %v", err)
	}
	if err := s.Prune(ctx(t), exp.Add(time.Microsecond)); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkUsed(ctx(t), "assertion:a", "jti-1", exp); err != nil {
		t.Fatalf("after prune: %v", err)
	}
}

func testMarkUsedConcurrent(t *testing.T, s store.Store) {
	const n = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, replays := 0, 0
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.MarkUsed(ctx(t), "assertion:x", "same", t0.Add(time.Minute))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, store.ErrReplay):
				replays++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok != 1 || replays != n-1 {
		t.Fatalf("%d concurrent uses: %d accepted, %d refused as replays", n, ok, replays)
	}
}

func testMeta(t *testing.T, s store.Store) {
	if _, err := s.Meta(ctx(t), "k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Meta: %v, want ErrNotFound", err)
	}
	if put, err := s.PutMetaIfAbsent(ctx(t), "k", []byte("one")); err != nil || !put {
		t.Fatalf("first put: %v %v", put, err)
	}
	if put, err := s.PutMetaIfAbsent(ctx(t), "k", []byte("two")); err != nil || put {
		t.Fatalf("second put: %v %v", put, err)
	}
	if v, err := s.Meta(ctx(t), "k"); err != nil || string(v) != "one" {
		t.Fatalf("Meta: %q %v", v, err)
	}
	if swapped, err := s.SwapMeta(ctx(t), "k", []byte("two"), []byte("three")); err != nil || swapped {
		t.Fatalf("swap from a value that is not there: %v %v", swapped, err)
	}
	if swapped, err := s.SwapMeta(ctx(t), "k", []byte("one"), []byte("three")); err != nil || !swapped {
		t.Fatalf("swap: %v %v", swapped, err)
	}
	if v, err := s.Meta(ctx(t), "k"); err != nil || string(v) != "three" {
		t.Fatalf("Meta after the swap: %q %v", v, err)
	}
	if _, err := s.SwapMeta(ctx(t), "none", []byte("a"), []byte("b")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("swap of a missing key: %v, want ErrNotFound", err)
	}
}

func testEvents(t *testing.T, s store.Store) {
	for i := range 5 {
		target := "a"
		if i%2 == 1 {
			target = "b"
		}
		if err := s.RecordEvent(ctx(t), store.Event{Time: t0.Add(time.Duration(i) * time.Second), Actor: "admin:test",
			Action: fmt.Sprintf("act%d", i), Target: target}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.Events(ctx(t), store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 {
		t.Fatalf("%d events", len(all))
	}
	for i, ev := range all {
		if ev.Action != fmt.Sprintf("act%d", i) || !ev.Time.Equal(t0.Add(time.Duration(i)*time.Second)) || ev.Actor != "admin:test" {
			t.Fatalf("event %d: %+v", i, ev)
		}
		if i > 0 && ev.Seq <= all[i-1].Seq {
			t.Fatalf("seq not increasing: %d after %d", ev.Seq, all[i-1].Seq)
		}
	}
	b, _ := s.Events(ctx(t), store.EventFilter{Target: "b"})
	if len(b) != 2 || b[0].Action != "act1" || b[1].Action != "act3" {
		t.Fatalf("target filter: %+v", b)
	}
	page, _ := s.Events(ctx(t), store.EventFilter{After: all[1].Seq, Limit: 2})
	if len(page) != 2 || page[0].Action != "act2" || page[1].Action != "act3" {
		t.Fatalf("page: %+v", page)
	}
	// Detail is kept as a JSON object.
	a := sampleAgent("ai-agent://prod/detail")
	if err := s.CreateAgent(ctx(t), a, event("agent.register", a.ID)); err != nil {
		t.Fatal(err)
	}
	evs, _ := s.Events(ctx(t), store.EventFilter{Target: a.ID})
	var d map[string]string
	if len(evs) != 1 || json.Unmarshal(evs[0].Detail, &d) != nil || d["k"] != "v" {
		t.Fatalf("detail: %+v", evs)
	}
}

func testChangeFeed(t *testing.T, s store.Store) {
	c, cancel := context.WithCancel(ctx(t))
	defer cancel()
	feed := s.Subscribe(c)
	if !s.FeedHealthy() {
		t.Fatal("feed not healthy after open")
	}
	a := sampleAgent("ai-agent://prod/feed")
	if err := s.CreateAgent(ctx(t), a, event("agent.register", a.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateAgent(ctx(t), a.ID, event("agent.disable", a.ID), func(a *store.Agent) error {
		a.Status = store.StatusDisabled
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeToken(ctx(t), store.RevokedToken{JTI: "jf", AgentID: a.ID, ExpiresAt: t0, RevokedAt: t0}, event("token.revoke", "jf")); err != nil {
		t.Fatal(err)
	}
	if err := s.RotateSigningKey(ctx(t), "", store.SigningKey{KID: "kf", Alg: "EdDSA", PublicJWK: []byte("{}"), Sealed: []byte{1}, CreatedAt: t0}, time.Time{}, event("keys.rotate", "kf")); err != nil {
		t.Fatal(err)
	}
	want := []store.Change{
		{Kind: store.ChangeAgent, Key: a.ID},
		{Kind: store.ChangeAgent, Key: a.ID},
		{Kind: store.ChangeTokenRevoked, Key: "jf"},
		{Kind: store.ChangeSigningKeys},
	}
	for i, w := range want {
		select {
		case got := <-feed:
			if got != w {
				t.Fatalf("change %d: got %+v, want %+v", i, got, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("change %d (%+v) not delivered within 5s", i, w)
		}
	}
	// A failed mutation announces nothing.
	_ = s.CreateAgent(ctx(t), a, event("agent.register", a.ID))
	select {
	case got := <-feed:
		t.Fatalf("a failed create announced %+v", got)
	case <-time.After(200 * time.Millisecond):
	}
}

// policyID is a version id shaped like a real one, the digest of name.
func policyID(name string) string {
	d := sha256.Sum256([]byte(name))
	return "sha256:" + hex.EncodeToString(d[:])
}

func samplePolicyVersion(name string, created time.Time) store.PolicyVersion {
	return store.PolicyVersion{
		ID:        policyID(name),
		Author:    "admin:alice",
		Message:   "version " + name,
		CreatedAt: created,
		Files: map[string][]byte{
			"policies/main.rego": []byte("package warden\n\n# " + name + "\ndefault allow := false\n"),
		},
		Tests: []byte(`{"passed":1,"failed":0}`),
	}
}

// addPolicyVersions stores a version for each name, created at t0, and returns their ids.
func addPolicyVersions(t *testing.T, s store.Store, names ...string) []string {
	t.Helper()
	var ids []string
	for _, name := range names {
		v := samplePolicyVersion(name, t0)
		if err := s.AddPolicyVersion(ctx(t), v, event("policy.push", v.ID)); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, v.ID)
	}
	return ids
}

func policyState(t *testing.T, s store.Store) store.PolicyState {
	t.Helper()
	st, err := s.PolicyState(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func countEvents(t *testing.T, s store.Store) int {
	t.Helper()
	evs, err := s.Events(ctx(t), store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

func testPolicyVersionRoundTrip(t *testing.T, s store.Store) {
	parent := samplePolicyVersion("parent", t0)
	if err := s.AddPolicyVersion(ctx(t), parent, event("policy.push", parent.ID)); err != nil {
		t.Fatal(err)
	}
	large := make([]byte, 16<<20) // the largest bundle there is, in one file
	rand.NewChaCha8([32]byte{'w', 'a', 'r', 'd', 'e', 'n'}).Read(large)
	v := store.PolicyVersion{
		ID:        policyID("child"),
		Parent:    parent.ID,
		Author:    "admin:bob",
		Message:   "tighten trading limits\n\nsee ticket 42",
		CreatedAt: t0.Add(time.Minute),
		Files: map[string][]byte{
			"policies/trading.rego": []byte("package warden.trading\n\ndefault allow := false\n"),
			"data.json":             []byte(`{"limits": {"max": 100}}`),
			"testdata/binary.bin":   {0, 0xff, 0xfe, '\n', 0, 0x80, '\r'},
			"empty.rego":            {},
			"docs/ünïcode/naïve.md": []byte("é\r\n"),
			"large/blob.bin":        large,
		},
		// Kept as written, not normalised as JSON.
		Tests: []byte(`{"passed": 12,  "failed":0, "coverage": 87.50}`),
	}
	if err := s.AddPolicyVersion(ctx(t), v, event("policy.push", v.ID)); err != nil {
		t.Fatal(err)
	}
	got, err := s.PolicyVersion(ctx(t), v.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Files) != len(v.Files) {
		t.Fatalf("%d files came back, want %d", len(got.Files), len(v.Files))
	}
	for path, want := range v.Files {
		content, ok := got.Files[path]
		if !ok {
			t.Fatalf("file %q is missing", path)
		}
		if content == nil || !bytes.Equal(content, want) {
			t.Fatalf("file %q: %d bytes came back, not the %d stored", path, len(content), len(want))
		}
	}
	got.Files, v.Files = nil, nil
	if !reflect.DeepEqual(got, v) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, v)
	}
	// A version without files or test summary.
	bare := store.PolicyVersion{ID: policyID("bare"), Author: "a", CreatedAt: t0}
	if err := s.AddPolicyVersion(ctx(t), bare, event("policy.push", bare.ID)); err != nil {
		t.Fatal(err)
	}
	got, err = s.PolicyVersion(ctx(t), bare.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Files == nil || len(got.Files) != 0 || len(got.Tests) != 0 || got.Parent != "" || got.Message != "" || !got.CreatedAt.Equal(t0) {
		t.Fatalf("bare version came back as %+v", got)
	}
}

func testPolicyVersionConflict(t *testing.T, s store.Store) {
	v := samplePolicyVersion("v", t0)
	if err := s.AddPolicyVersion(ctx(t), v, event("policy.push", v.ID)); err != nil {
		t.Fatal(err)
	}
	again := samplePolicyVersion("v", t0.Add(time.Hour))
	again.Message = "another message"
	again.Files = map[string][]byte{"other.rego": []byte("package other\n")}
	if err := s.AddPolicyVersion(ctx(t), again, event("policy.push", v.ID)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second add: %v, want ErrConflict", err)
	}
	got, err := s.PolicyVersion(ctx(t), v.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, v) {
		t.Fatalf("a refused add changed the version: %+v", got)
	}
	if n := countEvents(t, s); n != 1 {
		t.Fatalf("a refused add left an event: %d events", n)
	}
}

func testPolicyNotFound(t *testing.T, s store.Store) {
	missing := policyID("missing")
	if _, err := s.PolicyVersion(ctx(t), missing); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("PolicyVersion: %v, want ErrNotFound", err)
	}
	if vs, err := s.PolicyVersions(ctx(t), "", 0); err != nil || len(vs) != 0 {
		t.Fatalf("PolicyVersions of an empty store: %+v %v", vs, err)
	}
	if _, err := s.PolicyVersions(ctx(t), missing, 10); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("PolicyVersions before an unknown version: %v, want ErrNotFound", err)
	}
	if st := policyState(t, s); !reflect.DeepEqual(st, store.PolicyState{}) {
		t.Fatalf("state before any activation: %+v", st)
	}
	if as, err := s.PolicyActivations(ctx(t), 0); err != nil || len(as) != 0 {
		t.Fatalf("activations before any: %+v %v", as, err)
	}
	if _, err := s.ActivatePolicy(ctx(t), missing, "", t0, "admin:test", event("policy.activate", missing)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ActivatePolicy: %v, want ErrNotFound", err)
	}
	if _, err := s.SetShadowPolicy(ctx(t), missing, event("policy.shadow", missing)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SetShadowPolicy: %v, want ErrNotFound", err)
	}
	if _, err := s.RollbackPolicy(ctx(t), "", "", t0, "admin:test", event("policy.rollback", "")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RollbackPolicy with nothing active: %v, want ErrNotFound", err)
	}
	if st := policyState(t, s); !reflect.DeepEqual(st, store.PolicyState{}) {
		t.Fatalf("state after refused changes: %+v", st)
	}
	if n := countEvents(t, s); n != 0 {
		t.Fatalf("refused changes left %d events", n)
	}
}

func testPolicyVersionList(t *testing.T, s store.Store) {
	// Stored in this order; three were created at the same time, and the
	// last stored was created first.
	specs := []struct {
		name string
		at   time.Time
	}{
		{"v1", t0},
		{"v2", t0.Add(time.Minute)},
		{"v3", t0.Add(time.Minute)},
		{"v4", t0.Add(time.Minute)},
		{"v5", t0.Add(2 * time.Minute)},
		{"v0", t0.Add(-time.Minute)},
	}
	stored := make(map[string]store.PolicyVersion)
	for _, sp := range specs {
		v := samplePolicyVersion(sp.name, sp.at)
		if err := s.AddPolicyVersion(ctx(t), v, event("policy.push", v.ID)); err != nil {
			t.Fatal(err)
		}
		v.Files = nil // left out of listings
		stored[v.ID] = v
	}
	// Newest first; of those created at the same time, the later stored first.
	var all []string
	for _, name := range []string{"v5", "v4", "v3", "v2", "v1", "v0"} {
		all = append(all, policyID(name))
	}
	list := func(before string, limit int) []string {
		t.Helper()
		vs, err := s.PolicyVersions(ctx(t), before, limit)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, v := range vs {
			if !reflect.DeepEqual(v, stored[v.ID]) {
				t.Fatalf("listed %+v\nwant %+v", v, stored[v.ID])
			}
			out = append(out, v.ID)
		}
		return out
	}
	if got := list("", 0); !reflect.DeepEqual(got, all) {
		t.Fatalf("all: %q\nwant %q", got, all)
	}
	if got := list("", 3); !reflect.DeepEqual(got, all[:3]) {
		t.Fatalf("first 3: %q", got)
	}
	if got := list(all[2], 0); !reflect.DeepEqual(got, all[3:]) {
		t.Fatalf("before the third: %q", got)
	}
	if got := list(all[5], 0); len(got) != 0 {
		t.Fatalf("before the oldest: %q", got)
	}
	for _, limit := range []int{1, 2, 4} {
		var paged []string
		for before := ""; ; {
			page := list(before, limit)
			paged = append(paged, page...)
			if len(page) < limit {
				break
			}
			before = page[len(page)-1]
		}
		if !reflect.DeepEqual(paged, all) {
			t.Fatalf("paged by %d: %q", limit, paged)
		}
	}
}

func testPolicyActivate(t *testing.T, s store.Store) {
	ids := addPolicyVersions(t, s, "a", "b")
	a, b := ids[0], ids[1]
	if _, err := s.ActivatePolicy(ctx(t), a, b, t0, "admin:alice", event("policy.activate", a)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("activate expecting b while none is active: %v, want ErrConflict", err)
	}
	t1 := t0.Add(time.Minute)
	st, err := s.ActivatePolicy(ctx(t), a, "", t1, "admin:alice", event("policy.activate", a))
	if err != nil {
		t.Fatal(err)
	}
	if st.Active != a || st.Shadow != "" || st.Activation.Seq == 0 ||
		!reflect.DeepEqual(st.Activation, store.PolicyActivation{Seq: st.Activation.Seq, Version: a, Kind: store.ActivationActivate, Actor: "admin:alice", Time: t1}) {
		t.Fatalf("after the first activation: %+v", st)
	}
	if got := policyState(t, s); !reflect.DeepEqual(got, st) {
		t.Fatalf("PolicyState %+v, ActivatePolicy returned %+v", got, st)
	}
	events := countEvents(t, s)
	// A wrong expectation changes nothing.
	for _, expect := range []string{"", b, policyID("missing")} {
		if _, err := s.ActivatePolicy(ctx(t), b, expect, t0.Add(time.Hour), "admin:eve", event("policy.activate", b)); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("activate expecting %q while a is active: %v, want ErrConflict", expect, err)
		}
	}
	if _, err := s.ActivatePolicy(ctx(t), policyID("missing"), a, t0.Add(time.Hour), "admin:eve", event("policy.activate", "x")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("activate an unknown version: %v, want ErrNotFound", err)
	}
	if got := policyState(t, s); !reflect.DeepEqual(got, st) {
		t.Fatalf("refused activations changed the state: %+v", got)
	}
	if as, _ := s.PolicyActivations(ctx(t), 0); len(as) != 1 {
		t.Fatalf("refused activations were recorded: %+v", as)
	}
	if n := countEvents(t, s); n != events {
		t.Fatalf("refused activations left %d events", n-events)
	}
	// The next activation undoes to the current one.
	t2 := t0.Add(2 * time.Minute)
	st2, err := s.ActivatePolicy(ctx(t), b, a, t2, "admin:bob", event("policy.activate", b))
	if err != nil {
		t.Fatal(err)
	}
	if st2.Active != b || st2.Activation.Seq <= st.Activation.Seq ||
		!reflect.DeepEqual(st2.Activation, store.PolicyActivation{Seq: st2.Activation.Seq, Version: b, Kind: store.ActivationActivate, Actor: "admin:bob", Time: t2, Undo: st.Activation.Seq}) {
		t.Fatalf("after the second activation: %+v", st2)
	}
	if got := policyState(t, s); !reflect.DeepEqual(got, st2) {
		t.Fatalf("PolicyState %+v, ActivatePolicy returned %+v", got, st2)
	}
}

func testPolicyRollback(t *testing.T, s store.Store) {
	ids := addPolicyVersions(t, s, "a", "b", "c", "d")
	a, b, c, d := ids[0], ids[1], ids[2], ids[3]
	activate := func(id, expect string) store.PolicyState {
		t.Helper()
		st, err := s.ActivatePolicy(ctx(t), id, expect, t0, "admin:test", event("policy.activate", id))
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	rollback := func(expect, want string, undo int64) store.PolicyState {
		t.Helper()
		st, err := s.RollbackPolicy(ctx(t), expect, want, t0.Add(time.Hour), "admin:rb", event("policy.rollback", expect))
		if err != nil {
			t.Fatal(err)
		}
		if st.Active != want || st.Activation.Kind != store.ActivationRollback || st.Activation.Version != want ||
			st.Activation.Actor != "admin:rb" || !st.Activation.Time.Equal(t0.Add(time.Hour)) || st.Activation.Undo != undo {
			t.Fatalf("rollback from %s: %+v, want %s undoing to %d", expect, st, want, undo)
		}
		if got := policyState(t, s); !reflect.DeepEqual(got, st) {
			t.Fatalf("PolicyState %+v, RollbackPolicy returned %+v", got, st)
		}
		return st
	}
	stA := activate(a, "")
	activate(b, a)
	activate(c, b)
	if _, err := s.RollbackPolicy(ctx(t), b, "", t0, "admin:rb", event("policy.rollback", b)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("rollback expecting b while c is active: %v, want ErrConflict", err)
	}
	// The caller means to return to a, but c now undoes to b: refused.
	if _, err := s.RollbackPolicy(ctx(t), c, a, t0, "admin:rb", event("policy.rollback", c)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("rollback to a while c undoes to b: %v, want ErrConflict", err)
	}
	rollback(c, b, stA.Activation.Seq) // c undoes to b's activation, which undoes to a's
	rollback(b, a, 0)
	before := policyState(t, s)
	if _, err := s.RollbackPolicy(ctx(t), a, "", t0, "admin:rb", event("policy.rollback", a)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rollback past the first activation: %v, want ErrNotFound", err)
	}
	if got := policyState(t, s); !reflect.DeepEqual(got, before) {
		t.Fatalf("a refused rollback changed the state: %+v", got)
	}
	// An activation after rollbacks undoes to the version before it.
	activate(d, a)
	rollback(d, a, 0)
	as, err := s.PolicyActivations(ctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range as {
		if one, err := s.PolicyActivation(ctx(t), x.Seq); err != nil || !reflect.DeepEqual(one, x) {
			t.Fatalf("PolicyActivation(%d) = %+v, %v; listed as %+v", x.Seq, one, err, x)
		}
	}
	if _, err := s.PolicyActivation(ctx(t), as[0].Seq+1000); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an activation that does not exist: %v, want ErrNotFound", err)
	}
	var got []string
	for _, x := range as {
		got = append(got, x.Kind+" "+x.Version)
	}
	want := []string{"rollback " + a, "activate " + d, "rollback " + a, "rollback " + b, "activate " + c, "activate " + b, "activate " + a}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("activations:\n got %q\nwant %q", got, want)
	}
}

func testPolicyShadow(t *testing.T, s store.Store) {
	ids := addPolicyVersions(t, s, "a", "b")
	a, b := ids[0], ids[1]
	st, err := s.SetShadowPolicy(ctx(t), b, event("policy.shadow", b))
	if err != nil {
		t.Fatal(err)
	}
	if st.Shadow != b || st.Active != "" || st.Activation != (store.PolicyActivation{}) {
		t.Fatalf("shadow before any activation: %+v", st)
	}
	if got := policyState(t, s); !reflect.DeepEqual(got, st) {
		t.Fatalf("PolicyState %+v, SetShadowPolicy returned %+v", got, st)
	}
	// The shadow stays through activations.
	st, err = s.ActivatePolicy(ctx(t), a, "", t0, "admin:test", event("policy.activate", a))
	if err != nil {
		t.Fatal(err)
	}
	if st.Active != a || st.Shadow != b {
		t.Fatalf("after activation: %+v", st)
	}
	if _, err := s.SetShadowPolicy(ctx(t), policyID("missing"), event("policy.shadow", "x")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("shadow an unknown version: %v, want ErrNotFound", err)
	}
	if got := policyState(t, s); !reflect.DeepEqual(got, st) {
		t.Fatalf("a refused shadow changed the state: %+v", got)
	}
	cleared, err := s.SetShadowPolicy(ctx(t), "", event("policy.shadow", ""))
	if err != nil {
		t.Fatal(err)
	}
	want := st
	want.Shadow = ""
	if !reflect.DeepEqual(cleared, want) {
		t.Fatalf("after clearing the shadow: %+v, want %+v", cleared, want)
	}
	if got := policyState(t, s); !reflect.DeepEqual(got, want) {
		t.Fatalf("PolicyState after clearing: %+v", got)
	}
	// Clearing when there is none is harmless.
	if again, err := s.SetShadowPolicy(ctx(t), "", event("policy.shadow", "")); err != nil || !reflect.DeepEqual(again, want) {
		t.Fatalf("clearing again: %+v %v", again, err)
	}
}

func testPolicyActivations(t *testing.T, s store.Store) {
	ids := addPolicyVersions(t, s, "a", "b", "c")
	var made []store.PolicyActivation
	expect := ""
	for i, id := range ids {
		st, err := s.ActivatePolicy(ctx(t), id, expect, t0.Add(time.Duration(i)*time.Second), fmt.Sprintf("admin:%d", i), event("policy.activate", id))
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, st.Activation)
		expect = id
	}
	st, err := s.RollbackPolicy(ctx(t), expect, "", t0.Add(time.Minute), "admin:rb", event("policy.rollback", expect))
	if err != nil {
		t.Fatal(err)
	}
	made = append(made, st.Activation)
	slices.Reverse(made)
	all, err := s.PolicyActivations(ctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(all, made) {
		t.Fatalf("activations, newest first:\n got %+v\nwant %+v", all, made)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Seq >= all[i-1].Seq {
			t.Fatalf("seq not decreasing: %d after %d", all[i].Seq, all[i-1].Seq)
		}
	}
	if st.Activation.Undo != made[3].Seq {
		t.Fatalf("the rollback undoes to %d, want the first activation %d", st.Activation.Undo, made[3].Seq)
	}
	if some, err := s.PolicyActivations(ctx(t), 2); err != nil || !reflect.DeepEqual(some, made[:2]) {
		t.Fatalf("the newest 2: %+v %v", some, err)
	}
}

func testPolicyEvents(t *testing.T, s store.Store) {
	v := samplePolicyVersion("a", t0)
	w := samplePolicyVersion("b", t0)
	ep := store.EnforcementPoint{Name: "mcp-gateway", CredentialDigest: credentialDigest("c1"), CreatedAt: t0, CreatedBy: "admin:test"}
	steps := []struct {
		action, target string
		do             func(ev store.Event) error
	}{
		{"policy.push", v.ID, func(ev store.Event) error { return s.AddPolicyVersion(ctx(t), v, ev) }},
		{"policy.push", w.ID, func(ev store.Event) error { return s.AddPolicyVersion(ctx(t), w, ev) }},
		{"policy.activate", v.ID, func(ev store.Event) error {
			_, err := s.ActivatePolicy(ctx(t), v.ID, "", t0, "admin:test", ev)
			return err
		}},
		{"policy.shadow", w.ID, func(ev store.Event) error { _, err := s.SetShadowPolicy(ctx(t), w.ID, ev); return err }},
		{"policy.activate", w.ID, func(ev store.Event) error {
			_, err := s.ActivatePolicy(ctx(t), w.ID, v.ID, t0, "admin:test", ev)
			return err
		}},
		{"policy.rollback", w.ID, func(ev store.Event) error {
			_, err := s.RollbackPolicy(ctx(t), w.ID, "", t0, "admin:test", ev)
			return err
		}},
		{"policy.shadow_clear", "", func(ev store.Event) error { _, err := s.SetShadowPolicy(ctx(t), "", ev); return err }},
		{"enforcement_point.register", ep.Name, func(ev store.Event) error { return s.RegisterEnforcementPoint(ctx(t), ep, ev) }},
		{"enforcement_point.revoke", ep.Name, func(ev store.Event) error {
			_, err := s.RevokeEnforcementPoint(ctx(t), ep.Name, t0.Add(time.Hour), ev)
			return err
		}},
	}
	for _, st := range steps {
		if err := st.do(event(st.action, st.target)); err != nil {
			t.Fatalf("%s %s: %v", st.action, st.target, err)
		}
	}
	// Refused changes record nothing.
	refused := []error{
		s.AddPolicyVersion(ctx(t), v, event("refused", v.ID)),
		func() error {
			_, err := s.ActivatePolicy(ctx(t), w.ID, w.ID, t0, "admin:test", event("refused", w.ID))
			return err
		}(),
		func() error {
			_, err := s.SetShadowPolicy(ctx(t), policyID("missing"), event("refused", ""))
			return err
		}(),
		func() error {
			_, err := s.RollbackPolicy(ctx(t), v.ID, "", t0, "admin:test", event("refused", ""))
			return err
		}(),
		s.RegisterEnforcementPoint(ctx(t), store.EnforcementPoint{Name: "other", CredentialDigest: credentialDigest("c1"), CreatedAt: t0}, event("refused", "other")),
		func() error {
			_, err := s.RevokeEnforcementPoint(ctx(t), ep.Name, t0, event("refused", ep.Name))
			return err
		}(),
	}
	for i, err := range refused {
		if err == nil {
			t.Fatalf("refused change %d was accepted", i)
		}
	}
	evs, err := s.Events(ctx(t), store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != len(steps) {
		t.Fatalf("%d events for %d changes: %+v", len(evs), len(steps), evs)
	}
	for i, st := range steps {
		if evs[i].Action != st.action || evs[i].Target != st.target || evs[i].Actor != "admin:test" || !evs[i].Time.Equal(t0) {
			t.Fatalf("event %d: %+v, want %s %s", i, evs[i], st.action, st.target)
		}
	}
}

func testPolicyChangeFeed(t *testing.T, s store.Store) {
	ids := addPolicyVersions(t, s, "a", "b")
	a, b := ids[0], ids[1]
	c, cancel := context.WithCancel(ctx(t))
	defer cancel()
	feed := s.Subscribe(c)
	ep := store.EnforcementPoint{Name: "proxy", CredentialDigest: credentialDigest("p"), CreatedAt: t0, CreatedBy: "admin:test"}
	steps := []func() error{
		func() error {
			_, err := s.ActivatePolicy(ctx(t), a, "", t0, "admin:test", event("policy.activate", a))
			return err
		},
		func() error { _, err := s.SetShadowPolicy(ctx(t), b, event("policy.shadow", b)); return err },
		func() error {
			_, err := s.ActivatePolicy(ctx(t), b, a, t0, "admin:test", event("policy.activate", b))
			return err
		},
		func() error {
			_, err := s.RollbackPolicy(ctx(t), b, "", t0, "admin:test", event("policy.rollback", b))
			return err
		},
		func() error { _, err := s.SetShadowPolicy(ctx(t), "", event("policy.shadow", "")); return err },
		func() error {
			return s.RegisterEnforcementPoint(ctx(t), ep, event("enforcement_point.register", ep.Name))
		},
		func() error {
			_, err := s.RevokeEnforcementPoint(ctx(t), ep.Name, t0, event("enforcement_point.revoke", ep.Name))
			return err
		},
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	want := []store.Change{
		{Kind: store.ChangePolicy},
		{Kind: store.ChangePolicy},
		{Kind: store.ChangePolicy},
		{Kind: store.ChangePolicy},
		{Kind: store.ChangePolicy},
		{Kind: store.ChangeEnforcementPoints},
		{Kind: store.ChangeEnforcementPoints},
	}
	for i, w := range want {
		select {
		case got := <-feed:
			if got != w {
				t.Fatalf("change %d: got %+v, want %+v", i, got, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("change %d (%+v) not delivered within 5s", i, w)
		}
	}
	// Refused changes announce nothing.
	_, _ = s.ActivatePolicy(ctx(t), b, b, t0, "admin:test", event("policy.activate", b))
	_, _ = s.RollbackPolicy(ctx(t), a, "", t0, "admin:test", event("policy.rollback", a))
	_, _ = s.SetShadowPolicy(ctx(t), policyID("missing"), event("policy.shadow", ""))
	_, _ = s.RevokeEnforcementPoint(ctx(t), ep.Name, t0, event("enforcement_point.revoke", ep.Name))
	_ = s.RegisterEnforcementPoint(ctx(t), store.EnforcementPoint{Name: "x", CredentialDigest: ep.CredentialDigest, CreatedAt: t0}, event("enforcement_point.register", "x"))
	select {
	case got := <-feed:
		t.Fatalf("a refused change announced %+v", got)
	case <-time.After(200 * time.Millisecond):
	}
}

func testPolicyConcurrentActivations(t *testing.T, s store.Store) {
	const n = 16
	names := []string{"base"}
	for i := range n {
		names = append(names, fmt.Sprintf("v%d", i))
	}
	ids := addPolicyVersions(t, s, names...)
	base := ids[0]
	if _, err := s.ActivatePolicy(ctx(t), base, "", t0, "admin:test", event("policy.activate", base)); err != nil {
		t.Fatal(err)
	}
	// Replicas that all saw base active race to activate different versions.
	race := func(op func(i int) (store.PolicyState, error)) (winner store.PolicyState) {
		t.Helper()
		var (
			wg        sync.WaitGroup
			mu        sync.Mutex
			conflicts int
			wins      []store.PolicyState
		)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, err := op(i)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins = append(wins, st)
				case errors.Is(err, store.ErrConflict):
					conflicts++
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if len(wins) != 1 || conflicts != n-1 {
			t.Fatalf("%d racing changes: %d accepted, %d refused as conflicts", n, len(wins), conflicts)
		}
		if got := policyState(t, s); !reflect.DeepEqual(got, wins[0]) {
			t.Fatalf("state %+v, the winner got %+v", got, wins[0])
		}
		return wins[0]
	}
	won := race(func(i int) (store.PolicyState, error) {
		return s.ActivatePolicy(ctx(t), ids[i+1], base, t0, fmt.Sprintf("admin:%d", i), event("policy.activate", ids[i+1]))
	})
	if won.Active == base || won.Activation.Kind != store.ActivationActivate {
		t.Fatalf("after the race: %+v", won)
	}
	// Racing rollbacks: one goes back to base, the others find it changed.
	back := race(func(i int) (store.PolicyState, error) {
		return s.RollbackPolicy(ctx(t), won.Active, "", t0, fmt.Sprintf("admin:%d", i), event("policy.rollback", won.Active))
	})
	if back.Active != base || back.Activation.Undo != 0 {
		t.Fatalf("after the racing rollbacks: %+v", back)
	}
	if as, _ := s.PolicyActivations(ctx(t), 0); len(as) != 3 {
		t.Fatalf("%d activations recorded, want 3", len(as))
	}
	if evs, _ := s.Events(ctx(t), store.EventFilter{}); len(evs) != len(ids)+3 {
		t.Fatalf("%d events, want one per stored change (%d)", len(evs), len(ids)+3)
	}
}

func credentialDigest(credential string) []byte {
	d := sha256.Sum256([]byte(credential))
	return d[:]
}

func sampleEnforcementPoint(name string) store.EnforcementPoint {
	return store.EnforcementPoint{
		Name:             name,
		CredentialDigest: credentialDigest("credential of " + name),
		Description:      "gateway " + name,
		Audience:         "https://" + name + ".example/mcp",
		Trust:            []string{"source_ip"},
		CreatedAt:        t0,
		CreatedBy:        "admin:test",
	}
}

func enforcementPoints(t *testing.T, s store.Store) []store.EnforcementPoint {
	t.Helper()
	ps, err := s.EnforcementPoints(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func testEnforcementPointRegister(t *testing.T, s store.Store) {
	if ps := enforcementPoints(t, s); len(ps) != 0 {
		t.Fatalf("an empty store lists %+v", ps)
	}
	var want []store.EnforcementPoint
	// Listed in byte order, the same on every backend.
	for _, name := range []string{"Proxy", "mcp-gw", "mcp-gw.b", "mcp-gw/a"} {
		want = append(want, sampleEnforcementPoint(name))
	}
	want[1].Description = ""
	// Without an audience, deliberately, and trusted for nothing; trusted for two fields.
	want[1].Audience, want[1].NoAudience, want[1].Trust = "", true, []string{}
	want[0].Trust = []string{"source_ip", "session"}
	for _, i := range []int{2, 0, 3, 1} {
		if err := s.RegisterEnforcementPoint(ctx(t), want[i], event("enforcement_point.register", want[i].Name)); err != nil {
			t.Fatal(err)
		}
	}
	if got := enforcementPoints(t, s); !reflect.DeepEqual(got, want) {
		t.Fatalf("listed:\n got %+v\nwant %+v", got, want)
	}
	sameName := sampleEnforcementPoint("mcp-gw")
	sameName.CredentialDigest = credentialDigest("a new credential")
	if err := s.RegisterEnforcementPoint(ctx(t), sameName, event("enforcement_point.register", sameName.Name)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a live name again: %v, want ErrConflict", err)
	}
	sameDigest := sampleEnforcementPoint("another")
	sameDigest.CredentialDigest = want[2].CredentialDigest
	if err := s.RegisterEnforcementPoint(ctx(t), sameDigest, event("enforcement_point.register", sameDigest.Name)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("another's credential digest: %v, want ErrConflict", err)
	}
	short := sampleEnforcementPoint("short")
	short.CredentialDigest = short.CredentialDigest[:16]
	if err := s.RegisterEnforcementPoint(ctx(t), short, event("enforcement_point.register", short.Name)); err == nil {
		t.Fatal("a credential digest that is not a SHA-256 was accepted")
	}
	if got := enforcementPoints(t, s); !reflect.DeepEqual(got, want) {
		t.Fatalf("refused registrations changed the list: %+v", got)
	}
	if n := countEvents(t, s); n != len(want) {
		t.Fatalf("%d events for %d registrations", n, len(want))
	}
}

func testEnforcementPointRevoke(t *testing.T, s store.Store) {
	gw, other := sampleEnforcementPoint("gw"), sampleEnforcementPoint("other")
	for _, p := range []store.EnforcementPoint{gw, other} {
		if err := s.RegisterEnforcementPoint(ctx(t), p, event("enforcement_point.register", p.Name)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RevokeEnforcementPoint(ctx(t), "nobody", t0, event("enforcement_point.revoke", "nobody")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoke an unknown one: %v, want ErrNotFound", err)
	}
	at := t0.Add(time.Hour)
	revoked, err := s.RevokeEnforcementPoint(ctx(t), gw.Name, at, event("enforcement_point.revoke", gw.Name))
	if err != nil {
		t.Fatal(err)
	}
	want := gw
	want.RevokedAt = at
	if !reflect.DeepEqual(revoked, want) {
		t.Fatalf("revoked:\n got %+v\nwant %+v", revoked, want)
	}
	if got := enforcementPoints(t, s); !reflect.DeepEqual(got, []store.EnforcementPoint{want, other}) {
		t.Fatalf("after revoking: %+v", got)
	}
	if _, err := s.RevokeEnforcementPoint(ctx(t), gw.Name, at.Add(time.Hour), event("enforcement_point.revoke", gw.Name)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoke a revoked one: %v, want ErrNotFound", err)
	}
	// The revoked credential is not taken by anyone, not even the point replacing gw.
	for _, name := range []string{"third", gw.Name} {
		p := sampleEnforcementPoint(name)
		p.CredentialDigest = gw.CredentialDigest
		if err := s.RegisterEnforcementPoint(ctx(t), p, event("enforcement_point.register", name)); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("%s with the revoked credential: %v, want ErrConflict", name, err)
		}
	}
	// A new gw replaces the revoked one.
	next := sampleEnforcementPoint(gw.Name)
	next.CredentialDigest = credentialDigest("gw's second credential")
	next.Description = "replacement"
	next.CreatedAt = t0.Add(2 * time.Hour)
	next.CreatedBy = "admin:other"
	if err := s.RegisterEnforcementPoint(ctx(t), next, event("enforcement_point.register", next.Name)); err != nil {
		t.Fatalf("re-register a revoked name: %v", err)
	}
	if got := enforcementPoints(t, s); !reflect.DeepEqual(got, []store.EnforcementPoint{next, other}) {
		t.Fatalf("after replacing gw: %+v", got)
	}
	if err := s.RegisterEnforcementPoint(ctx(t), next, event("enforcement_point.register", next.Name)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("the replacement again: %v, want ErrConflict", err)
	}
	if n := countEvents(t, s); n != 4 {
		t.Fatalf("%d events, want 4 (2 registrations, a revocation, a replacement)", n)
	}
}

func testEnforcementPointConcurrent(t *testing.T, s store.Store) {
	old := sampleEnforcementPoint("replaced")
	if err := s.RegisterEnforcementPoint(ctx(t), old, event("enforcement_point.register", old.Name)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeEnforcementPoint(ctx(t), old.Name, t0, event("enforcement_point.revoke", old.Name)); err != nil {
		t.Fatal(err)
	}
	// Racing registrations of a new name and of a revoked one's: one each wins.
	for _, name := range []string{"new", old.Name} {
		const n = 16
		var (
			wg            sync.WaitGroup
			mu            sync.Mutex
			ok, conflicts int
		)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := sampleEnforcementPoint(name)
				p.CredentialDigest = credentialDigest(fmt.Sprintf("%s %d", name, i))
				err := s.RegisterEnforcementPoint(ctx(t), p, event("enforcement_point.register", name))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					ok++
				case errors.Is(err, store.ErrConflict):
					conflicts++
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if ok != 1 || conflicts != n-1 {
			t.Fatalf("%d racing registrations of %s: %d accepted, %d refused as conflicts", n, name, ok, conflicts)
		}
	}
	ps := enforcementPoints(t, s)
	if len(ps) != 2 || ps[0].Name != "new" || ps[1].Name != old.Name || !ps[0].RevokedAt.IsZero() || !ps[1].RevokedAt.IsZero() {
		t.Fatalf("after the races: %+v", ps)
	}
}
