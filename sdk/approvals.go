package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/warden-run/warden/internal/identity"
)

// Approve approves approval request id, whose digest the agent has
// checked (an approval is for exactly one action: the digest says which),
// with a statement signed by the agent's own key. The requester, and agents
// the policy does not name as approvers, are refused.
func (c *Client) Approve(ctx context.Context, id, digest, reason string) error {
	return c.vote(ctx, id, digest, true, reason)
}

// Reject rejects approval request id.
func (c *Client) Reject(ctx context.Context, id, digest, reason string) error {
	return c.vote(ctx, id, digest, false, reason)
}

func (c *Client) vote(ctx context.Context, id, digest string, approve bool, reason string) error {
	st, err := c.key.statement(c.agentID, c.issuer+"/v1/approvals", identity.StatementTypeApproval, map[string]any{
		"approval": id, "digest": digest, "approve": approve, "reason": reason})
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]string{"statement": st})
	verb := "approve"
	if !approve {
		verb = "reject"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.server+"/v1/approvals/"+url.PathEscape(id)+"/"+verb, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", verb, id, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Code    string `json:"error"`
			Message string `json:"message"`
		}
		json.Unmarshal(b, &e)
		return fmt.Errorf("%s %s: %s: %s (HTTP %d)", verb, id, e.Code, e.Message, resp.StatusCode)
	}
	return nil
}

// statement signs claims as the agent: iss and sub the agent, aud, a fresh
// jti and a one-minute lifetime, under the JWS type typ.
func (k *Key) statement(agentID, aud, typ string, claims map[string]any) (string, error) {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: k.priv}, (&jose.SignerOptions{}).WithHeader("kid", k.kid).WithType(jose.ContentType(typ)))
	if err != nil {
		return "", err
	}
	now := time.Now()
	std := jwt.Claims{Issuer: agentID, Subject: agentID, Audience: jwt.Audience{aud}, ID: randomID(),
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute))}
	return jwt.Signed(s).Claims(std).Claims(claims).Serialize()
}
