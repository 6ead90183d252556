package grants_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/grants"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
)

const rules = `package warden.grants

decision := {"outcome": "grant", "max_lifetime": "20m"}
`

// A grant lasts its lifetime (shortened by policy), is seen only while in
// force, and its expiry is recorded; an ended grant stays ended.
func TestGrantExpires(t *testing.T) {
	t.Parallel()
	w := apptest.Start(t, nil)
	ctx := context.Background()
	v, _, _, err := w.App.Policies.Push(ctx, "admin:test", &policy.Bundle{Files: map[string][]byte{
		"policy.rego": []byte("package warden.authz\n\ndefault allow := false\n"), "grants.rego": []byte(rules)}}, "grants")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.App.Policies.Activate(ctx, "admin:test", v.ID); err != nil {
		t.Fatal(err)
	}
	const id = "ai-agent://dev/radiology/assistant"
	w.Register(t, id, "radiology")
	for w.App.View.Fresh() != nil {
		time.Sleep(time.Millisecond)
	}
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	s := grants.New(grants.Config{MaxLifetime: time.Hour, Now: now}, w.App.Store, w.App.Approvals, w.App.Policies, w.App.View)
	g, err := s.Ask(ctx, grants.Request{Agent: id, Task: "study-7", Actions: []string{"tools/call"}, Resources: []string{"pacs/*"},
		Constraints: map[string]any{"study": "1.2.840.7"}, Lifetime: "45m"}, grants.Requester{ID: "human:idp#ada", Kind: store.ApproverHuman})
	if err != nil || g.Status != store.GrantActive || time.Duration(g.Lifetime) != 20*time.Minute {
		t.Fatalf("grant %+v, %v", g, err)
	}
	args := map[string]any{"study": "1.2.840.7"}
	seen := func(task string) []any { return s.ForDecision(id, task, "tools/call", "pacs/read_study", args, now()) }
	if got := seen("study-7"); len(got) != 1 || got[0].(map[string]any)["matches"] != true {
		t.Fatalf("in its task: %v", got)
	}
	if got := seen("study-8"); len(got) != 0 {
		t.Fatalf("in another task: %v", got)
	}
	if !s.HasTask(id, "study-7") || s.HasTask(id, "study-8") {
		t.Fatal("HasTask")
	}
	clock.Add(int64(20 * time.Minute))
	if got := seen("study-7"); len(got) != 0 || s.HasTask(id, "study-7") {
		t.Fatalf("after its lifetime: %v", got)
	}
	if err := s.ExpireDue(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := w.App.Store.Grant(ctx, g.ID)
	if got.Status != store.GrantExpired || got.EndedBy != grants.Actor {
		t.Fatalf("after the sweep: %+v", got)
	}
	if _, err := s.Revoke(ctx, g.ID, "human:idp#ada", "late"); !errors.Is(err, grants.ErrFinal) {
		t.Fatalf("revoking an expired grant: %v", err)
	}
	// Bad requests change nothing.
	for name, r := range map[string]grants.Request{
		"no actions":       {Agent: id, Resources: []string{"pacs/x"}, Lifetime: "10m"},
		"a bare wildcard":  {Agent: id, Actions: []string{"tools/call"}, Resources: []string{"*"}, Lifetime: "10m"},
		"a wildcard mid":   {Agent: id, Actions: []string{"tools/call"}, Resources: []string{"pacs/*/x"}, Lifetime: "10m"},
		"too long":         {Agent: id, Actions: []string{"tools/call"}, Resources: []string{"pacs/x"}, Lifetime: "2h"},
		"bad task":         {Agent: id, Task: "a b", Actions: []string{"tools/call"}, Resources: []string{"pacs/x"}, Lifetime: "10m"},
		"unknown agent":    {Agent: "ai-agent://dev/nobody", Actions: []string{"tools/call"}, Resources: []string{"pacs/x"}, Lifetime: "10m"},
		"inexact constant": {Agent: id, Actions: []string{"tools/call"}, Resources: []string{"pacs/x"}, Constraints: map[string]any{"n": json.Number("9007199254740993")}, Lifetime: "10m"},
	} {
		if _, err := s.Ask(ctx, r, grants.Requester{ID: "human:idp#ada", Kind: store.ApproverHuman}); !errors.Is(err, grants.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// An agent asks for itself only.
	if _, err := s.Ask(ctx, grants.Request{Agent: id, Actions: []string{"tools/call"}, Resources: []string{"pacs/x"}, Lifetime: "10m"},
		grants.Requester{ID: "ai-agent://dev/other", Kind: store.ApproverAgent}); !errors.Is(err, grants.ErrInvalid) {
		t.Fatalf("an agent asked for another: %v", err)
	}
	if list, _ := w.App.Store.Grants(ctx, store.GrantFilter{}); len(list) != 1 {
		t.Fatalf("%d grants stored, want 1", len(list))
	}
}
