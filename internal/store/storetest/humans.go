package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/store"
)

func testHumans(t *testing.T, s store.Store) {
	c := ctx(t)
	h := store.Human{ID: "human:https://idp.example#248289761001", Issuer: "https://idp.example", Subject: "248289761001",
		Email: "alice@example.com", Roles: []string{"approver"}, FirstSeen: t0, LastLogin: t0}
	first := store.HumanSession{Digest: "d1", HumanID: h.ID, Roles: h.Roles, CreatedAt: t0, ExpiresAt: t0.Add(8 * time.Hour)}
	events := countEvents(t, s)
	if err := s.SignIn(c, h, first, event("human.login", h.ID)); err != nil {
		t.Fatal(err)
	}
	if countEvents(t, s) != events+1 {
		t.Fatal("the sign-in's event was not stored")
	}
	// A later sign-in keeps when the person was first seen.
	later := h
	later.FirstSeen, later.LastLogin, later.Roles = t0.Add(time.Hour), t0.Add(time.Hour), []string{"approver", "auditor"}
	second := store.HumanSession{Digest: "d2", HumanID: h.ID, Roles: later.Roles, CreatedAt: t0.Add(time.Hour), ExpiresAt: t0.Add(9 * time.Hour)}
	if err := s.SignIn(c, later, second, store.Event{}); err != nil {
		t.Fatal(err)
	}
	if err := s.SignIn(c, later, second, store.Event{}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a session digest used twice: %v", err)
	}
	got, err := s.Human(c, h.ID)
	if err != nil || !got.FirstSeen.Equal(t0) || !got.LastLogin.Equal(t0.Add(time.Hour)) || len(got.Roles) != 2 {
		t.Fatalf("human: %+v, %v", got, err)
	}
	sess, who, err := s.HumanSession(c, "d1")
	if err != nil || sess.HumanID != h.ID || who.Email != h.Email || !sess.ExpiresAt.Equal(first.ExpiresAt) || len(sess.Roles) != 1 {
		t.Fatalf("session: %+v %+v %v", sess, who, err)
	}
	if err := s.RevokeHumanSession(c, "d1", t0.Add(2*time.Hour), event("human.logout", h.ID)); err != nil {
		t.Fatal(err)
	}
	if sess, _, _ := s.HumanSession(c, "d1"); !sess.RevokedAt.Equal(t0.Add(2 * time.Hour)) {
		t.Fatalf("revoked session: %+v", sess)
	}
	if _, _, err := s.HumanSession(c, "none"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown session: %v", err)
	}
	if err := s.RevokeHumanSession(c, "none", t0, store.Event{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoking an unknown session: %v", err)
	}
	if _, err := s.Human(c, "human:x#y"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown human: %v", err)
	}
	if list, err := s.Humans(c); err != nil || len(list) != 1 {
		t.Fatalf("humans: %v %v", list, err)
	}
}

func testMetaSwapWithEvent(t *testing.T, s store.Store) {
	c := ctx(t)
	if _, err := s.PutMetaIfAbsent(c, "bootstrap", []byte("a")); err != nil {
		t.Fatal(err)
	}
	events := countEvents(t, s)
	if ok, err := s.SwapMetaWithEvent(c, "bootstrap", []byte("b"), []byte("c"), event("access.rotate", "bootstrap")); ok || err != nil {
		t.Fatalf("swap from a stale value: %v %v", ok, err)
	}
	if countEvents(t, s) != events {
		t.Fatal("a swap that did not happen left its event")
	}
	if ok, err := s.SwapMetaWithEvent(c, "bootstrap", []byte("a"), []byte("c"), event("access.rotate", "bootstrap")); !ok || err != nil {
		t.Fatalf("swap: %v %v", ok, err)
	}
	if v, _ := s.Meta(c, "bootstrap"); string(v) != "c" || countEvents(t, s) != events+1 {
		t.Fatalf("after the swap: %q, %d events", v, countEvents(t, s)-events)
	}
	if _, err := s.SwapMetaWithEvent(c, "none", []byte("a"), []byte("b"), store.Event{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("swap of an absent key: %v", err)
	}
}
