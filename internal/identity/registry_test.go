package identity

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/store"
)

func TestRegisterRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pub, priv := GenerateKey()
	good := Registration{ID: "ai-agent://dev/a", Roles: []string{"r"}, Owner: "team", PublicKey: PublicJWK(pub)}
	if _, err := e.reg.Register(e.ctx, "admin:test", good); err != nil {
		t.Fatal(err)
	}
	with := func(f func(*Registration)) Registration {
		r := good
		r.ID = "ai-agent://dev/new"
		f(&r)
		return r
	}
	cases := []struct {
		name string
		reg  Registration
		want error
	}{
		{"already registered", good, store.ErrConflict},
		{"malformed id", with(func(r *Registration) { r.ID = "ai-agent://dev/A" }), ErrInvalidAgentID},
		{"undeclared trust domain", with(func(r *Registration) { r.ID = "ai-agent://mars/a" }), ErrUnknownDomain},
		{"no role", with(func(r *Registration) { r.Roles = nil }), ErrInvalidAgent},
		{"bad role", with(func(r *Registration) { r.Roles = []string{"Admin Role"} }), ErrInvalidAgent},
		{"no owner", with(func(r *Registration) { r.Owner = " " }), ErrInvalidAgent},
		{"bad attribute name", with(func(r *Registration) { r.Attributes = map[string]string{"A B": "x"} }), ErrInvalidAgent},
		{"control character in attribute", with(func(r *Registration) { r.Attributes = map[string]string{"a": "x\n"} }), ErrInvalidAgent},
		{"no key", with(func(r *Registration) { r.PublicKey = nil }), ErrInvalidAgent},
		{"private key", with(func(r *Registration) { r.PublicKey = PrivateJWK(priv) }), ErrInvalidKey},
		{"not a key", with(func(r *Registration) { r.PublicKey = json.RawMessage(`{"kty":"oct","k":"AAAA"}`) }), ErrInvalidKey},
		{"another agent's key", with(func(r *Registration) { r.PublicKey = PublicJWK(pub) }), store.ErrConflict},
		{"delegate_to matching every domain", with(func(r *Registration) { r.Attributes = map[string]string{AttrDelegateTo: "ai-agent://*"} }), ErrInvalidAgent},
		{"delegate_to with a bad id", with(func(r *Registration) {
			r.Attributes = map[string]string{AttrDelegateTo: "ai-agent://dev/a, ai-agent://Dev/b"}
		}), ErrInvalidAgent},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := countEvents(t, e)
			if _, err := e.reg.Register(e.ctx, "admin:test", c.reg); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if countEvents(t, e) != before {
				t.Fatal("a refused registration recorded an event")
			}
			if c.reg.ID != good.ID {
				if _, err := e.st.Agent(e.ctx, c.reg.ID); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("a refused registration stored the agent: %v", err)
				}
			}
		})
	}
}

func TestAdminActionsAreRecorded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://dev/a", []string{"r"}, nil)
	steps := []func() error{
		func() error {
			_, err := e.reg.SetStatus(e.ctx, "admin:alice", a.id, store.StatusDisabled, "off")
			return err
		},
		func() error {
			_, err := e.reg.SetStatus(e.ctx, "admin:alice", a.id, store.StatusActive, "on")
			return err
		},
		func() error { _, err := e.reg.RevokeTokens(e.ctx, "admin:bob", a.id, "leak"); return err },
		func() error {
			pub, _ := GenerateKey()
			_, err := e.reg.RotateKey(e.ctx, "admin:bob", a.id, PublicJWK(pub), -1)
			return err
		},
		func() error { return e.reg.RevokeToken(e.ctx, "admin:carol", "jti-1", a.id, time.Time{}, "leak") },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := e.st.Events(e.ctx, store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		if ev.Time.IsZero() {
			t.Fatalf("event without time: %+v", ev)
		}
		got = append(got, ev.Actor+" "+ev.Action+" "+ev.Target)
	}
	want := []string{
		"system:bootstrap keys.rotate issuer",
		"admin:test agent.register " + a.id,
		"admin:alice agent.status " + a.id,
		"admin:alice agent.status " + a.id,
		"admin:bob agent.revoke " + a.id,
		"admin:bob agent.rotate_key " + a.id,
		"admin:carol token.revoke jti-1",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestAgentKeyRotationGrace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://dev/a", []string{"r"}, nil)
	pub, priv := GenerateKey()
	if _, err := e.reg.RotateKey(e.ctx, "admin:test", a.id, PublicJWK(pub), 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.RotateKey(e.ctx, "admin:test", a.id, PublicJWK(pub), time.Minute); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("registering the same key twice: %v", err)
	}
	b := testAgent{id: a.id, priv: priv, kid: Thumbprint(pub)}
	oldTok := e.token(a) // the old key works during the grace period
	newTok := e.token(b)
	e.clock.Advance(2 * time.Minute)
	if _, err := e.issuer.Issue(e.ctx, ccReq(e.assertion(a, assertionOpts{}))); !errors.Is(err, ErrKeyNotBound) {
		t.Fatalf("the retired key still authenticates: %v", err)
	}
	if _, err := e.ver.Verify(e.ctx, oldTok.AccessToken); !errors.Is(err, ErrKeyNotBound) {
		t.Fatalf("a token bound to the retired key: %v", err)
	}
	if _, err := e.ver.Verify(e.ctx, newTok.AccessToken); err != nil {
		t.Fatalf("a token bound to the new key: %v", err)
	}
}

func TestKeyLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.register("ai-agent://dev/a", []string{"r"}, nil)
	rotate := func(grace time.Duration) error {
		pub, _ := GenerateKey()
		_, err := e.reg.RotateKey(e.ctx, "admin:test", a.id, PublicJWK(pub), grace)
		return err
	}
	for range 2 {
		if err := rotate(time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := rotate(time.Hour); !errors.Is(err, ErrInvalidAgent) || !strings.Contains(err.Error(), "keys in use") {
		t.Fatalf("a fourth key in use: %v", err)
	}
	// Rotating without grace always works, and old keys are forgotten beyond the limit.
	for range 12 {
		if err := rotate(0); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := e.st.Agent(e.ctx, a.id)
	if len(got.Keys) != maxKeys || !got.Keys[len(got.Keys)-1].ActiveAt(e.clock.Now()) {
		t.Fatalf("%d keys kept", len(got.Keys))
	}
}
