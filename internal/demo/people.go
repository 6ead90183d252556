package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/oauth2"

	"github.com/warden-run/warden/internal/humans/devidp"
	"github.com/warden-run/warden/internal/server"
	"github.com/warden-run/warden/sdk"
)

// study is the radiology agent's task: one study of one patient.
const study = "study-1.2.840.4471"

// agentApproves has an agent check the held request and approve it with a
// statement signed by its own key.
func (d *Demo) agentApproves(id string) func(context.Context) result {
	return func(ctx context.Context) result {
		a, err := d.App.Store.Approval(ctx, d.lastApproval)
		if err != nil {
			return mk(failed, err.Error())
		}
		c, err := sdk.NewClient(d.URL, id, d.agents[id].key)
		if err != nil {
			return mk(failed, err.Error())
		}
		if err := c.Approve(ctx, a.ID, a.Digest, fmt.Sprintf("%s %s within the safe range", a.Resource.ID, a.Args)); err != nil {
			return mk(failed, err.Error())
		}
		a, _ = d.App.Store.Approval(ctx, a.ID)
		return mk(voted, fmt.Sprintf("request %s: %d of %d, signed (digest %s...)", a.ID, len(a.Votes), a.Rule.Count, a.Digest[:15]))
	}
}

// personApproves signs the safety engineer in at the OpenID provider (the
// authorization code flow with PKCE, as `warden login --browser` does) and
// approves the held request under her own name.
func (d *Demo) personApproves(ctx context.Context) result {
	session, who, err := d.signIn(ctx, safetyEngineer)
	if err != nil {
		return mk(failed, err.Error())
	}
	body := strings.NewReader(`{"reason": "setpoint checked against the recipe"}`)
	req, _ := http.NewRequestWithContext(ctx, "POST", d.URL+"/v1/approvals/"+url.PathEscape(d.lastApproval)+"/approve", body)
	req.Header.Set("Authorization", "Bearer "+session)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return mk(failed, err.Error())
	}
	defer resp.Body.Close()
	var a struct {
		Status string `json:"status"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&a) != nil {
		return mk(failed, fmt.Sprintf("approve: HTTP %d", resp.StatusCode))
	}
	return mk(voted, fmt.Sprintf("as %s: request %s is %s", who, d.lastApproval, a.Status))
}

// signIn plays the person at the browser and returns their Warden session.
func (d *Demo) signIn(ctx context.Context, u devidp.User) (string, string, error) {
	p, err := oidc.NewProvider(ctx, d.idp.Issuer)
	if err != nil {
		return "", "", err
	}
	ep := p.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInParams
	oc := &oauth2.Config{ClientID: devidp.ClientID, Endpoint: ep, Scopes: []string{oidc.ScopeOpenID, "email", "groups"},
		RedirectURL: "http://127.0.0.1:1/callback"}
	verifier, nonce := oauth2.GenerateVerifier(), randomPassword()
	back, err := d.idp.BrowserLogin(oc.AuthCodeURL("demo", oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce)), u.Username, u.Password)
	if err != nil {
		return "", "", err
	}
	bu, err := url.Parse(back)
	if err != nil || bu.Query().Get("code") == "" {
		return "", "", errors.New("the provider sent no code")
	}
	tok, err := oc.Exchange(ctx, bu.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		return "", "", err
	}
	idToken, _ := tok.Extra("id_token").(string)
	b, _ := json.Marshal(server.LoginRequest{IDToken: idToken, Nonce: nonce})
	resp, err := http.Post(d.URL+"/v1/auth/login", "application/json", strings.NewReader(string(b)))
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	var lr server.LoginResponse
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&lr) != nil {
		return "", "", fmt.Errorf("sign-in at Warden: HTTP %d", resp.StatusCode)
	}
	return lr.SessionToken, lr.Principal.Email, nil
}

// askStudyGrant has the agent ask for one patient's studies for one study.
func (d *Demo) askStudyGrant(id, task, patient string) func(context.Context) result {
	return func(ctx context.Context) result {
		g, err := d.agents[id].client.AskGrant(ctx, sdk.GrantRequest{Task: task, Actions: []string{"tools/call"},
			Resources: []string{"pacs/radiology/query_studies"}, Constraints: map[string]any{"patient_id": patient},
			Lifetime: "30m", Reason: "chest CT review"})
		if err != nil {
			return mk(failed, err.Error())
		}
		until := g.ExpiresAt
		if t, err := time.Parse(time.RFC3339Nano, g.ExpiresAt); err == nil {
			until = t.Format("15:04:05 MST")
		}
		return mk(granted, fmt.Sprintf("grant %s, %s until %s (policy clock)", g.ID, g.Status, until))
	}
}

// completeTask has the agent end its task, and with it the task's grants.
func (d *Demo) completeTask(id, task string) func(context.Context) result {
	return func(ctx context.Context) result {
		if err := d.agents[id].client.CompleteTask(ctx, task); err != nil {
			return mk(failed, err.Error())
		}
		return mk(done, "task "+task+" complete: its grant ended")
	}
}

// callInTask calls a tool in an MCP session whose tokens are bound to task.
func (d *Demo) callInTask(id, task, tool string, args any) func(context.Context) result {
	return func(ctx context.Context) result {
		key := id + "#" + task
		s, ok := d.taskSessions[key]
		if !ok {
			c, err := sdk.NewClient(d.URL, id, d.agents[id].key, sdk.WithResource(d.GatewayURL), sdk.WithDPoP(), sdk.WithTask(task))
			if err != nil {
				return mk(failed, err.Error())
			}
			client := mcp.NewClient(&mcp.Implementation{Name: short(id), Version: "1"}, &mcp.ClientOptions{Capabilities: &mcp.ClientCapabilities{}})
			if s, err = client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: d.GatewayURL,
				HTTPClient: &http.Client{Transport: c.Transport(nil)}, MaxRetries: -1}, nil); err != nil {
				return mk(failed, err.Error())
			}
			d.taskSessions[key] = s
		}
		return d.call(ctx, s, tool, args)
	}
}
