package enforce_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/enforce/mcpgw"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
	"github.com/warden-run/warden/internal/wire"
	"github.com/warden-run/warden/sdk"
)

// approvalPolicy lets every call through, and mail needs two reviewers,
// one of them an agent.
const approvalPolicy = `package warden.authz

allow := true

# The admin token counts toward count, never as a person.
obligations["require_approvals"] := {"count": 2, "roles": ["safety-reviewer", "admin"], "agents": 1} if input.resource.id == "mail/send"

# Policy reads who approved: mail to the board needs no bootstrap admin among them.
deny contains "board_mail_needs_a_named_person" if {
	input.args.to == "board@example.com"
	some a in input.context.approvals
	a.by == "admin:bootstrap"
}
`

// pending calls tool with args and returns the approval request it is held
// for; it fails the test if the call ran or was refused otherwise.
func pending(t *testing.T, s *mcp.ClientSession, args map[string]any) wire.ApprovalRef {
	t.Helper()
	_, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "mail__send", Arguments: args})
	var je *jsonrpc.Error
	if !errors.As(err, &je) || je.Code != mcpgw.CodeApprovalRequired {
		t.Fatalf("want the call held for approval, got %v", err)
	}
	var data struct {
		Approval wire.ApprovalRef `json:"approval"`
	}
	if json.Unmarshal(je.Data, &data) != nil || data.Approval.ID == "" || !strings.Contains(je.Message, "send the same call") {
		t.Fatalf("the pending answer does not name the request: %s %s", je.Message, je.Data)
	}
	return data.Approval
}

// The whole approval path through the MCP gateway: held, approved by a
// human and an agent (not by the requester, not by an agent without the
// role, a repeated approver counted once), run once, a second run held
// again, changed arguments held apart, a rejection that stands.
func TestApprovalsThroughTheGateway(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	v, _, _, err := r.w.App.Policies.Push(r.ctx, "admin:test", &policy.Bundle{Files: map[string][]byte{"policy.rego": []byte(approvalPolicy)}}, "approvals")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.w.App.Policies.Activate(r.ctx, "admin:test", v.ID); err != nil {
		t.Fatal(err)
	}
	requester := r.agent("ai-agent://dev/ops/mailer")
	s := r.session(requester, "2025-11-25", nil)
	voter := func(id, role string) *sdk.Client {
		c, err := sdk.NewClient(r.w.URL, id, r.w.Register(t, id, role))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	safety, bystander := voter("ai-agent://dev/ops/safety", "safety-reviewer"), voter("ai-agent://dev/ops/bystander", "worker")
	self, err := sdk.NewClient(r.w.URL, requester.id, requester.key)
	if err != nil {
		t.Fatal(err)
	}
	human := func(verb, id string) (int, string) {
		req, _ := http.NewRequest("POST", r.w.URL+"/v1/approvals/"+id+"/"+verb, strings.NewReader(`{"reason": "looked at it"}`))
		req.Header.Set("Authorization", "Bearer "+r.w.AdminToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			Status string `json:"status"`
		}
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Status
	}

	args := map[string]any{"to": "plant-safety@example.com"}
	ref := pending(t, s, args)
	if ref.Needed != 2 || ref.Approvals != 0 || ref.Status != "pending" {
		t.Fatalf("request %+v", ref)
	}
	if again := pending(t, s, args); again.ID != ref.ID {
		t.Fatalf("the same call opened a second request: %s, %s", again.ID, ref.ID)
	}
	a, err := r.w.App.Store.Approval(r.ctx, ref.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := self.Approve(r.ctx, ref.ID, a.Digest, "mine"); err == nil || !strings.Contains(err.Error(), "not_eligible") {
		t.Fatalf("the requester approved its own request: %v", err)
	}
	if err := bystander.Approve(r.ctx, ref.ID, a.Digest, ""); err == nil || !strings.Contains(err.Error(), "not_eligible") {
		t.Fatalf("an agent without the role approved: %v", err)
	}
	if err := safety.Approve(r.ctx, ref.ID, "sha256:other", ""); err == nil || !strings.Contains(err.Error(), "invalid_statement") {
		t.Fatalf("a statement for another digest was taken: %v", err)
	}
	for range 2 { // counted once
		if err := safety.Approve(r.ctx, ref.ID, a.Digest, "setpoint checked"); err != nil {
			t.Fatal(err)
		}
	}
	if got := pending(t, s, args); got.ID != ref.ID || got.Approvals != 1 {
		t.Fatalf("after one approver (twice): %+v", got)
	}
	if code, status := human("approve", ref.ID); code != http.StatusOK || status != "approved" {
		t.Fatalf("the human's approval: HTTP %d %s", code, status)
	}
	// Changed arguments are another action: held, apart.
	if other := pending(t, s, map[string]any{"to": "attacker@example.com"}); other.ID == ref.ID {
		t.Fatal("changed arguments used the approval")
	}
	if len(r.egress()) != 0 {
		t.Fatalf("something ran before its approval: %v", r.egress())
	}
	res, err := s.CallTool(r.ctx, &mcp.CallToolParams{Name: "mail__send", Arguments: args})
	if err != nil || res.IsError {
		t.Fatalf("the approved call: %v %v", res, err)
	}
	if sent := r.egress(); len(sent) != 1 || sent[0] != "mail plant-safety@example.com" {
		t.Fatalf("sent %v", sent)
	}
	// Once: the next identical call is held by a new request.
	next := pending(t, s, args)
	if next.ID == ref.ID || len(r.egress()) != 1 {
		t.Fatalf("the approval ran twice: %+v, sent %v", next, r.egress())
	}
	if code, _ := human("approve", ref.ID); code != http.StatusConflict {
		t.Fatalf("a vote on a used request: HTTP %d", code)
	}
	// A rejection rejects, and stands.
	if code, status := human("reject", next.ID); code != http.StatusOK || status != "rejected" {
		t.Fatalf("rejection: HTTP %d %s", code, status)
	}
	_, err = s.CallTool(r.ctx, &mcp.CallToolParams{Name: "mail__send", Arguments: args})
	var je *jsonrpc.Error
	if !errors.As(err, &je) || je.Code != mcpgw.CodeDenied {
		t.Fatalf("after the rejection: %v", err)
	}
	if len(r.egress()) != 1 {
		t.Fatalf("sent %v", r.egress())
	}

	// The policy decides again on the approvals given: one it refuses is
	// not used up, and nothing runs.
	board := map[string]any{"to": "board@example.com"}
	b := pending(t, s, board)
	ba, _ := r.w.App.Store.Approval(r.ctx, b.ID)
	if err := safety.Approve(r.ctx, b.ID, ba.Digest, ""); err != nil {
		t.Fatal(err)
	}
	if code, status := human("approve", b.ID); code != http.StatusOK || status != "approved" {
		t.Fatalf("board approval: HTTP %d %s", code, status)
	}
	_, err = s.CallTool(r.ctx, &mcp.CallToolParams{Name: "mail__send", Arguments: board})
	if !errors.As(err, &je) || je.Code != mcpgw.CodeDenied || len(r.egress()) != 1 {
		t.Fatalf("approved, but refused by policy on who approved: %v, sent %v", err, r.egress())
	}
	if ba, _ := r.w.App.Store.Approval(r.ctx, b.ID); ba.Status != "approved" {
		t.Fatalf("a refused call used the approval up: %s", ba.Status)
	}
	d := lastDecision(t, r, "mail/send")
	if !strings.Contains(string(d.Input), `"approvals":[{"by":"`) || !slices.Contains(d.Reasons, "board_mail_needs_a_named_person") {
		t.Fatalf("the decision's input and reasons: %s %v", d.Input, d.Reasons)
	}

	// An approval not used in time has expired: the call waits for a new
	// request. (Time is moved by moving the request's expiry.)
	late := map[string]any{"to": "late@example.com"}
	lr := pending(t, s, late)
	la, _ := r.w.App.Store.Approval(r.ctx, lr.ID)
	if err := safety.Approve(r.ctx, lr.ID, la.Digest, ""); err != nil {
		t.Fatal(err)
	}
	if code, status := human("approve", lr.ID); code != http.StatusOK || status != "approved" {
		t.Fatalf("late approval: HTTP %d %s", code, status)
	}
	if _, err := r.w.App.Store.UpdateApproval(r.ctx, lr.ID, func(a *store.Approval) (store.Event, error) {
		a.ExpiresAt = time.Now().Add(-time.Second)
		return store.Event{}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if again := pending(t, s, late); again.ID == lr.ID || len(r.egress()) != 1 {
		t.Fatalf("an expired approval ran: %+v, sent %v", again, r.egress())
	}
	if la, _ := r.w.App.Store.Approval(r.ctx, lr.ID); la.Status != "expired" {
		t.Fatalf("the late request is %s", la.Status)
	}

	// A restricted agent is contained: it approves nothing.
	held := pending(t, s, map[string]any{"to": "ops@example.com"})
	ha, _ := r.w.App.Store.Approval(r.ctx, held.ID)
	if _, err := r.w.App.Registry.SetStatus(r.ctx, "admin:test", "ai-agent://dev/ops/safety", store.StatusRestricted, "under review"); err != nil {
		t.Fatal(err)
	}
	if err := safety.Approve(r.ctx, held.ID, ha.Digest, ""); err == nil || !strings.Contains(err.Error(), "restricted") {
		t.Fatalf("a restricted agent approved: %v", err)
	}

	// Every step is in the audit log.
	r.w.App.Relay.Sync(r.ctx)
	n, _ := r.w.App.Audit.Size(r.ctx)
	data, _ := r.w.App.Audit.Read(r.ctx, 0, n)
	seen := map[string]int{}
	for _, d := range data {
		if e, _ := audit.DecodeEntry(d); e != nil && strings.HasPrefix(e.Action, "approval.") {
			seen[e.Action]++
		}
	}
	if seen["approval.request"] != 7 || seen["approval.approve"] != 6 || seen["approval.consume"] != 1 || seen["approval.reject"] != 1 || seen["approval.expire"] != 1 {
		t.Fatalf("approval entries %v", seen)
	}
}

// lastDecision is the last decision entry about resource.
func lastDecision(t *testing.T, r *rig, resource string) *audit.Entry {
	t.Helper()
	n, _ := r.w.App.Audit.Size(r.ctx)
	data, _ := r.w.App.Audit.Read(r.ctx, 0, n)
	for i := len(data) - 1; i >= 0; i-- {
		if e, _ := audit.DecodeEntry(data[i]); e != nil && e.Kind == audit.KindDecision && strings.Contains(string(e.Resource), resource) {
			return e
		}
	}
	t.Fatalf("no decision about %s", resource)
	return nil
}
