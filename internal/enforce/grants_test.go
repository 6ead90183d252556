package enforce_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/enforce/mcpgw"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
	"github.com/warden-run/warden/sdk"
)

// grantPolicy allows nothing of the records but what a grant covers; the
// grant rules give record grants to agents at once, and mail grants after
// one approval.
const grantPolicy = `package warden.authz

default allow := false

allow if {
	some g in input.context.grants
	g.matches
}
`

const grantRules = `package warden.grants

default decision := {"outcome": "deny", "reasons": ["not grantable"]}

decision := {"outcome": "grant"} if {
	input.requester.kind == "agent"
	every r in input.grant.resources { startswith(r, "pacs/") }
} else := {"outcome": "approval", "require_approvals": {"count": 1}} if {
	every r in input.grant.resources { startswith(r, "mail/") }
}
`

// A grant's whole life through the MCP gateway: refused without it, used
// in its task and with its argument values only, useless in another task,
// ended with its task, revoked at once, given after an approval.
func TestGrantLifecycleThroughTheGateway(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var reads []string
	pacs := mcp.NewServer(&mcp.Implementation{Name: "pacs", Version: "1"}, nil)
	mcp.AddTool(pacs, &mcp.Tool{Name: "read_record"}, func(_ context.Context, _ *mcp.CallToolRequest, a struct {
		PatientID string `json:"patient_id"`
	}) (*mcp.CallToolResult, any, error) {
		mu.Lock()
		reads = append(reads, a.PatientID)
		mu.Unlock()
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "record of " + a.PatientID}}}, nil, nil
	})
	up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return pacs }, nil))
	t.Cleanup(func() { up.CloseClientConnections(); up.Close() })
	r := newRig(t, func(gc *app.GatewayConfig) {
		gc.MCP.Servers = append(gc.MCP.Servers, mcpgw.Server{Name: "pacs", URL: up.URL, Trust: mcpgw.Trusted})
	})
	v, _, _, err := r.w.App.Policies.Push(r.ctx, "admin:test", &policy.Bundle{Files: map[string][]byte{
		"policy.rego": []byte(grantPolicy), "grants.rego": []byte(grantRules)}}, "grants")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.w.App.Policies.Activate(r.ctx, "admin:test", v.ID); err != nil {
		t.Fatal(err)
	}
	const id = "ai-agent://dev/radiology/assistant"
	a := r.agent(id)
	read := func(s *mcp.ClientSession, patient string) bool {
		t.Helper()
		_, err := s.CallTool(r.ctx, &mcp.CallToolParams{Name: "pacs__read_record", Arguments: map[string]any{"patient_id": patient}})
		var je *jsonrpc.Error
		switch {
		case err == nil:
			return true
		case errors.As(err, &je) && je.Code == mcpgw.CodeDenied:
			return false
		}
		t.Fatalf("read %s: %v", patient, err)
		return false
	}
	inTask := func(task string) *mcp.ClientSession {
		t.Helper()
		c, err := sdk.NewClient(r.w.URL, id, a.key, sdk.WithResource(r.mcpURL), sdk.WithTask(task))
		if err != nil {
			t.Fatal(err)
		}
		s, err := mcp.NewClient(&mcp.Implementation{Name: "radiology", Version: "1"}, nil).Connect(r.ctx,
			&mcp.StreamableClientTransport{Endpoint: r.mcpURL, HTTPClient: &http.Client{Transport: c.Transport(nil)}, MaxRetries: -1}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	plain := r.session(a, "2025-11-25", nil)
	if read(plain, "P-1") {
		t.Fatal("a read without a grant was allowed")
	}
	ask := func(task, patient string) *sdk.Grant {
		t.Helper()
		g, err := a.mcp.AskGrant(r.ctx, sdk.GrantRequest{Task: task, Actions: []string{"tools/call"}, Resources: []string{"pacs/read_record"},
			Constraints: map[string]any{"patient_id": patient}, Lifetime: "10m", Reason: "study of " + patient})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	g1 := ask("study-1", "P-1")
	if g1.Status != "active" {
		t.Fatalf("grant %+v", g1)
	}
	// Bound to its task: a token without it does not see the grant.
	if read(plain, "P-1") {
		t.Fatal("a task grant was used outside its task")
	}
	if _, err := inTaskClient(t, r, a, "study-1").Token(r.ctx); err != nil {
		t.Fatalf("a token for the granted task: %v", err)
	}
	s1 := inTask("study-1")
	if !read(s1, "P-1") {
		t.Fatal("the granted read in its task was denied")
	}
	if read(s1, "P-2") {
		t.Fatal("a read of another patient was allowed by the grant")
	}
	// No token for a task without a grant; a grant for task A is useless in B.
	if _, err := inTaskClient(t, r, a, "study-9").Token(r.ctx); err == nil || !strings.Contains(err.Error(), "no grant") {
		t.Fatalf("a token for a task without a grant: %v", err)
	}
	ask("study-2", "P-2")
	s2 := inTask("study-2")
	if read(s2, "P-1") || !read(s2, "P-2") {
		t.Fatal("grants leaked between tasks")
	}
	// The task completes: its grant ends at once, the token it had notwithstanding.
	if err := a.mcp.CompleteTask(r.ctx, "study-1"); err != nil {
		t.Fatal(err)
	}
	if read(s1, "P-1") {
		t.Fatal("a grant was used after its task completed")
	}
	if _, err := inTaskClient(t, r, a, "study-1").Token(r.ctx); err == nil {
		t.Fatal("a token for a completed task")
	}
	// A person revokes the other.
	list, _ := r.w.App.Store.Grants(r.ctx, store.GrantFilter{Task: "study-2"})
	req, _ := http.NewRequest("POST", r.w.URL+"/v1/grants/"+list[0].ID+"/revoke", strings.NewReader(`{"reason": "study cancelled"}`))
	req.Header.Set("Authorization", "Bearer "+r.w.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %v %v", resp, err)
	}
	if read(s2, "P-2") {
		t.Fatal("a revoked grant was used")
	}
	mu.Lock()
	if strings.Join(reads, ",") != "P-1,P-2" {
		t.Fatalf("the upstream served %v", reads)
	}
	mu.Unlock()
	// Refused by the grant rules.
	if _, err := a.mcp.AskGrant(r.ctx, sdk.GrantRequest{Actions: []string{"tools/call"}, Resources: []string{"payments/transfer"}, Lifetime: "10m"}); err == nil || !strings.Contains(err.Error(), "not grantable") {
		t.Fatalf("an ungrantable request: %v", err)
	}
	// Asked beyond the longest lifetime: refused, with the reason.
	if _, err := a.mcp.AskGrant(r.ctx, sdk.GrantRequest{Actions: []string{"tools/call"}, Resources: []string{"pacs/read_record"}, Lifetime: "3h"}); err == nil || !strings.Contains(err.Error(), "lifetime") {
		t.Fatalf("a grant beyond the longest lifetime: %v", err)
	}

	// A grant that needs an approval is pending until a person approves.
	pg, err := a.mcp.AskGrant(r.ctx, sdk.GrantRequest{Task: "notify", Actions: []string{"tools/call"}, Resources: []string{"mail/send"}, Lifetime: "5m"})
	if err != nil || pg.Status != "pending" || pg.ApprovalID == "" {
		t.Fatalf("a grant needing approval: %+v %v", pg, err)
	}
	req, _ = http.NewRequest("POST", r.w.URL+"/v1/approvals/"+pg.ApprovalID+"/approve", strings.NewReader(`{"reason": "ok"}`))
	req.Header.Set("Authorization", "Bearer "+r.w.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("approve: %v %v", resp, err)
	}
	// A person who asks for a grant does not approve it.
	body := `{"agent": "` + id + `", "task": "notify-2", "actions": ["tools/call"], "resources": ["mail/send"], "lifetime": "5m", "reason": "mine"}`
	req, _ = http.NewRequest("POST", r.w.URL+"/v1/grants", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+r.w.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("a person's grant request: %v %v", resp, err)
	}
	var mine store.Grant
	json.NewDecoder(resp.Body).Decode(&mine)
	resp.Body.Close()
	req, _ = http.NewRequest("POST", r.w.URL+"/v1/approvals/"+mine.ApprovalID+"/approve", strings.NewReader(`{"reason": "mine"}`))
	req.Header.Set("Authorization", "Bearer "+r.w.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("the requester approved their own grant: %v %v", resp, err)
	}
	got, err := r.w.App.Store.Grant(r.ctx, pg.ID)
	if err != nil || got.Status != store.GrantActive || !got.ExpiresAt.After(time.Now()) {
		t.Fatalf("the approved grant: %+v %v", got, err)
	}
	if ap, _ := r.w.App.Store.Approval(r.ctx, pg.ApprovalID); ap.Status != store.ApprovalConsumed {
		t.Fatalf("the grant's approval is %s", ap.Status)
	}
}

func inTaskClient(t *testing.T, r *rig, a *agent, task string) *sdk.Client {
	t.Helper()
	c, err := sdk.NewClient(r.w.URL, a.id, a.key, sdk.WithResource(r.mcpURL), sdk.WithTask(task))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
