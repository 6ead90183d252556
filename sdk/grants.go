package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/warden-run/warden/internal/identity"
)

// GrantRequest asks for a just-in-time grant for this agent: the actions on
// the resources (ids, or prefixes ending in *) one task needs, with the
// argument values they must have, for a lifetime ("30m").
type GrantRequest struct {
	Task        string         `json:"task,omitempty"`
	Actions     []string       `json:"actions"`
	Resources   []string       `json:"resources"`
	Constraints map[string]any `json:"constraints,omitempty"`
	Lifetime    string         `json:"lifetime"`
	Reason      string         `json:"reason,omitempty"`
}

// Grant is a grant as the server answers it.
type Grant struct {
	ID         string `json:"id"`
	Status     string `json:"status"` // active, or pending approvals
	Task       string `json:"task,omitempty"`
	ApprovalID string `json:"approval_id,omitempty"`
	ExpiresAt  string `json:"expires_at,omitempty"`
}

// AskGrant asks for a grant, signed with the agent's own key. The policy
// gives it at once (status active), sends it for approvals (pending:
// ApprovalID names the request), or refuses it (an error). Tokens bound to
// the task of an active grant come from a client made WithTask.
func (c *Client) AskGrant(ctx context.Context, r GrantRequest) (*Grant, error) {
	body := map[string]any{"agent": c.agentID, "task": r.Task, "actions": r.Actions, "resources": r.Resources,
		"constraints": r.Constraints, "lifetime": r.Lifetime, "reason": r.Reason}
	var g Grant
	if err := c.signedPost(ctx, "/v1/grants", map[string]any{"grant": body}, &g); err != nil {
		return nil, err
	}
	return &g, nil
}

// CompleteTask ends this agent's grants for task: its work is done.
func (c *Client) CompleteTask(ctx context.Context, task string) error {
	return c.signedPost(ctx, "/v1/tasks/"+url.PathEscape(task)+"/complete", map[string]any{"complete": task}, nil)
}

// signedPost posts claims as a statement the agent signs (aud: the
// issuer's /v1/grants).
func (c *Client) signedPost(ctx context.Context, path string, claims map[string]any, out any) error {
	st, err := c.key.statement(c.agentID, c.issuer+"/v1/grants", identity.StatementTypeGrant, claims)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(map[string]string{"statement": st})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.server+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		var e struct {
			Code    string `json:"error"`
			Message string `json:"message"`
		}
		json.Unmarshal(data, &e)
		return fmt.Errorf("%s: %s: %s (HTTP %d)", path, e.Code, e.Message, resp.StatusCode)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}
