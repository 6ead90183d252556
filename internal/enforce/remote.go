package enforce

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

	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/policy"
)

// ReasonNoDecision is the reason of the deny an enforcement point gives
// itself when the Warden server did not answer (unreachable, slow, or an
// answer that is not a decision).
const ReasonNoDecision = "warden.decision_unavailable"

// Remote asks a Warden server's decision API as a registered enforcement
// point (its credential from `warden pep register`).
type Remote struct {
	Server     string
	Credential string
	// HTTP reaches the server; Timeout bounds one decision (default 2 s).
	HTTP    *http.Client
	Timeout time.Duration
}

// Decide implements Decider: the server verifies the agent's token and
// the DPoP proof in req. Unreachable, slow or garbled is a deny
// (ReasonNoDecision), never an error that could be mistaken for less.
func (r Remote) Decide(ctx context.Context, req *decide.Request) (decide.Decision, error) {
	var d decide.Decision
	status, err := r.post(ctx, "/v1/decide", req, &d)
	switch {
	case status == http.StatusBadRequest:
		return decide.Decision{}, fmt.Errorf("%w: %v", decide.ErrInvalidRequest, err)
	case err != nil:
		return decide.Decision{Outcome: policy.Deny, Reasons: []string{ReasonNoDecision}}, nil
	case d.ID == "" || d.Outcome == "":
		return decide.Decision{Outcome: policy.Deny, Reasons: []string{ReasonNoDecision}}, nil
	}
	return d, nil
}

// MayAllow implements Decider; any failure is false.
func (r Remote) MayAllow(ctx context.Context, req *decide.Request) bool {
	body := map[string]any{"token": req.Token, "audience": req.Audience, "context": req.Context,
		"actions": []map[string]any{{"action": req.Action, "resource": req.Resource}}}
	var out struct {
		MayAllow []bool `json:"may_allow"`
	}
	if _, err := r.post(ctx, "/v1/decide/may-allow", body, &out); err != nil || len(out.MayAllow) != 1 {
		return false
	}
	return out.MayAllow[0]
}

// post sends one JSON request and decodes a 200 answer into out; it
// returns the status and, for anything else, an error with the answer.
func (r Remote) post(ctx context.Context, path string, in, out any) (int, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return 0, err
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(r.Server, "/")+path, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	hr.Header.Set("Authorization", "Bearer "+r.Credential)
	hr.Header.Set("Content-Type", "application/json")
	// A redirect is not followed: it would send the agent's token and proof,
	// and the enforcement point's credential, somewhere else. It is an
	// answer other than 200, so a deny.
	client := http.Client{}
	if r.HTTP != nil {
		client = *r.HTTP
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(hr)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Message string `json:"message"`
		}
		json.Unmarshal(rb, &e)
		if e.Message == "" {
			e.Message = strings.TrimSpace(string(rb))
		}
		return resp.StatusCode, fmt.Errorf("%s: %s", resp.Status, e.Message)
	}
	if err := json.Unmarshal(rb, out); err != nil {
		return resp.StatusCode, errors.New("the answer is not JSON")
	}
	return resp.StatusCode, nil
}
