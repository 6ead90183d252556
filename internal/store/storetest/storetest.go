// Package storetest is the conformance suite every store backend must pass:
// one set of behaviours, run against SQLite and PostgreSQL alike.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
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
