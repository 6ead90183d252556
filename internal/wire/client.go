package wire

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client asks a Warden server's decision API as a registered enforcement
// point (its credential from `warden pep register`). It never follows a
// redirect: one would carry the agent's token and proof, and the
// enforcement point's credential, somewhere else.
type Client struct {
	// Server is the Warden server's base URL; Credential the enforcement
	// point's.
	Server     string
	Credential string
	// HTTP reaches the server (its redirect policy is replaced); Timeout
	// bounds one call (default 2 s).
	HTTP    *http.Client
	Timeout time.Duration
}

// StatusError is an answer other than 200: its status and message.
type StatusError struct {
	Status  int
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("Warden answered %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// Decide asks POST /v1/decide. Anything but a decision is an error: a
// *StatusError for an answer other than 200 (400 wraps ErrInvalidRequest),
// or why there was no answer. An enforcement point must treat every error
// as a refusal.
func (c *Client) Decide(ctx context.Context, req *Request) (Decision, error) {
	var d Decision
	if err := c.post(ctx, "/v1/decide", req, &d); err != nil {
		return Decision{}, err
	}
	if d.ID == "" || d.Outcome == "" {
		return Decision{}, errors.New("Warden's answer is not a decision")
	}
	return d, nil
}

// MayAllow asks POST /v1/decide/may-allow whether some arguments could
// make req allowed; any failure is false.
func (c *Client) MayAllow(ctx context.Context, req *Request) bool {
	body := map[string]any{"token": req.Token, "audience": req.Audience, "context": req.Context,
		"actions": []map[string]any{{"action": req.Action, "resource": req.Resource}}}
	var out struct {
		MayAllow []bool `json:"may_allow"`
	}
	if err := c.post(ctx, "/v1/decide/may-allow", body, &out); err != nil || len(out.MayAllow) != 1 {
		return false
	}
	return out.MayAllow[0]
}

// maxAnswer bounds an answer read from the server.
const maxAnswer = 1 << 20

// post sends one JSON request and decodes a 200 answer into out.
func (c *Client) post(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.Server, "/")+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	hr.Header.Set("Authorization", "Bearer "+c.Credential)
	hr.Header.Set("Content-Type", "application/json")
	client := http.Client{}
	if c.HTTP != nil {
		client = *c.HTTP
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(hr)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Message string `json:"message"`
		}
		json.Unmarshal(rb, &e)
		if e.Message == "" {
			e.Message = strings.TrimSpace(string(rb))
		}
		se := &StatusError{Status: resp.StatusCode, Message: e.Message}
		if resp.StatusCode == http.StatusBadRequest {
			return fmt.Errorf("%w: %w", ErrInvalidRequest, se)
		}
		return se
	}
	if err := json.Unmarshal(rb, out); err != nil {
		return errors.New("Warden's answer is not JSON")
	}
	return nil
}
