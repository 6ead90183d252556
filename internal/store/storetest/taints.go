package storetest

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/store"
)

func sampleTaint(agent, task string) store.Taint {
	return store.Taint{AgentID: agent, Task: task, Name: "untrusted_content", DecisionID: "dec_" + task, AuditIndex: -1,
		EnforcementPoint: "mcp-gateway", Action: "tools/call", ResourceKind: "mcp.tool", ResourceID: "web/fetch",
		CreatedAt: t0, LastReadAt: t0}
}

func taintsOf(t *testing.T, s store.Store, agent string) []store.Taint {
	t.Helper()
	ts, err := s.Taints(ctx(t), agent)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func testTaints(t *testing.T, s store.Store) {
	const a, b = "ai-agent://prod/reader", "ai-agent://prod/other"
	first := sampleTaint(a, "")
	created, err := s.AddTaint(ctx(t), first, time.Time{})
	if err != nil || !created {
		t.Fatalf("first add: created %v, %v", created, err)
	}
	// A later read moves the last read; the source stays the first one's.
	later := sampleTaint(a, "")
	later.DecisionID, later.LastReadAt = "dec_later", t0.Add(time.Minute)
	if created, err := s.AddTaint(ctx(t), later, time.Time{}); err != nil || created {
		t.Fatalf("second add: created %v, %v", created, err)
	}
	// An older read does not move it back.
	older := sampleTaint(a, "")
	older.LastReadAt = t0.Add(-time.Hour)
	if _, err := s.AddTaint(ctx(t), older, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetTaintIndex(ctx(t), first, 42); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddTaint(ctx(t), sampleTaint(a, "task-7"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddTaint(ctx(t), sampleTaint(b, ""), time.Time{}); err != nil {
		t.Fatal(err)
	}
	want := first
	want.AuditIndex, want.LastReadAt = 42, t0.Add(time.Minute)
	got := taintsOf(t, s, a)
	if len(got) != 2 || !reflect.DeepEqual(got[0], want) || got[1].Task != "task-7" {
		t.Fatalf("taints of %s:\n got %+v\nwant %+v and task-7", a, got, want)
	}
	if all := taintsOf(t, s, ""); len(all) != 3 {
		t.Fatalf("all taints: %d, want 3", len(all))
	}
	// A read after the taint's time was up (last read before renewBefore)
	// starts it again, with its own source.
	again := sampleTaint(a, "")
	again.DecisionID, again.CreatedAt, again.LastReadAt = "dec_again", t0.Add(2*time.Hour), t0.Add(2*time.Hour)
	if created, err := s.AddTaint(ctx(t), again, t0.Add(90*time.Minute)); err != nil || !created {
		t.Fatalf("renewing an expired taint: created %v, %v", created, err)
	}
	if got := taintsOf(t, s, a); got[0].DecisionID != "dec_again" || !got[0].CreatedAt.Equal(again.CreatedAt) || got[0].AuditIndex != -1 {
		t.Fatalf("renewed taint %+v", got[0])
	}
}

func testTaintsClear(t *testing.T, s store.Store) {
	const a = "ai-agent://prod/reader"
	for _, task := range []string{"", "t1", "t2"} {
		if _, err := s.AddTaint(ctx(t), sampleTaint(a, task), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	before := countEvents(t, s)
	gone, err := s.ClearTaints(ctx(t), store.TaintSelection{AgentID: a, Task: "t1"}, event("taint.clear", ""))
	if err != nil || len(gone) != 1 || gone[0].Task != "t1" {
		t.Fatalf("clear t1: %+v, %v", gone, err)
	}
	if n := countEvents(t, s); n != before+1 {
		t.Fatalf("events: %d, want %d", n, before+1)
	}
	evs, err := s.Events(ctx(t), store.EventFilter{Target: a})
	if err != nil || len(evs) != 1 {
		t.Fatalf("events about %s: %+v, %v", a, evs, err)
	}
	var d struct {
		Taints []store.Taint     `json:"taints"`
		Detail map[string]string `json:"detail"`
	}
	if err := json.Unmarshal(evs[0].Detail, &d); err != nil || len(d.Taints) != 1 || d.Detail["k"] != "v" {
		t.Fatalf("event detail %s: %v", evs[0].Detail, err)
	}
	// Nothing to clear records nothing.
	if gone, err := s.ClearTaints(ctx(t), store.TaintSelection{AgentID: a, Task: "t1"}, event("taint.clear", "")); err != nil || len(gone) != 0 {
		t.Fatalf("clear again: %+v, %v", gone, err)
	}
	if n := countEvents(t, s); n != before+1 {
		t.Fatalf("an empty clear recorded an event")
	}
	gone, err = s.ClearTaints(ctx(t), store.TaintSelection{AgentID: a, AnyTask: true}, event("taint.clear", ""))
	if err != nil || len(gone) != 2 {
		t.Fatalf("clear every scope: %+v, %v", gone, err)
	}
	if left := taintsOf(t, s, a); len(left) != 0 {
		t.Fatalf("left: %+v", left)
	}
}

func testTaintsExpire(t *testing.T, s store.Store) {
	c, cancel := context.WithCancel(ctx(t))
	defer cancel()
	feed := s.Subscribe(c)
	const a, b = "ai-agent://prod/old", "ai-agent://prod/fresh"
	old := sampleTaint(a, "")
	fresh := sampleTaint(b, "")
	fresh.LastReadAt = t0.Add(time.Hour)
	for _, x := range []store.Taint{old, fresh} {
		if _, err := s.AddTaint(ctx(t), x, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		select {
		case got := <-feed:
			if got.Kind != store.ChangeTaint {
				t.Fatalf("announced %+v", got)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a new taint was not announced")
		}
	}
	before := countEvents(t, s)
	gone, err := s.ExpireTaints(ctx(t), t0.Add(time.Minute), store.Event{Time: t0, Actor: "warden:taint-expiry", Action: "taint.expire"})
	if err != nil || len(gone) != 1 || gone[0].AgentID != a {
		t.Fatalf("expire: %+v, %v", gone, err)
	}
	if n := countEvents(t, s); n != before+1 {
		t.Fatalf("events: %d, want %d", n, before+1)
	}
	select {
	case got := <-feed:
		if got != (store.Change{Kind: store.ChangeTaint, Key: a}) {
			t.Fatalf("announced %+v", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the expiry was not announced")
	}
	if left := taintsOf(t, s, ""); len(left) != 1 || left[0].AgentID != b {
		t.Fatalf("left: %+v", left)
	}
}
