package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// adminClient calls the admin API.
type adminClient struct {
	base  string
	token string
	http  *http.Client
}

// answerTimeout is how long the CLI waits for the server to begin its
// answer, unless a command says otherwise (a push waits for its tests).
var answerTimeout = 30 * time.Second

// newHTTP is a client that waits up to wait for an answer to begin, then
// reads it as long as it comes: an export of a large log streams for longer
// than any fixed bound.
func newHTTP(wait time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = wait
	// A redirect is an answer, never followed: it would carry the admin
	// token elsewhere.
	return &http.Client{Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// waitFor lets the server take up to wait to begin its answers.
func (c *adminClient) waitFor(wait time.Duration) { c.http = newHTTP(wait) }

// admin returns a client authenticated with the admin token from
// --admin-token-file, else WARDEN_ADMIN_TOKEN, else <data>/admin.token.
func (g *globals) admin() (*adminClient, error) {
	tok := ""
	if g.adminTokenFile == "" {
		tok = os.Getenv("WARDEN_ADMIN_TOKEN")
	}
	if tok == "" && g.adminTokenFile == "" {
		tok = g.session()
	}
	if tok == "" {
		path := g.adminTokenFile
		if path == "" {
			path = filepath.Join(g.data, "admin.token")
		}
		st, err := os.Stat(path)
		if err != nil && g.adminTokenFile != "" {
			return nil, fmt.Errorf("--admin-token-file: %w", err)
		}
		if err != nil {
			return nil, fmt.Errorf("no admin credential: sign in ('warden login'), give --admin-token-file, set WARDEN_ADMIN_TOKEN, or point --data at the server's data directory (%v)", err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("admin token file %s is readable by others (mode %04o); run chmod 600 %s", path, st.Mode().Perm(), path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("admin token: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok == "" {
		return nil, errors.New("the admin token is empty")
	}
	u, err := url.Parse(g.server)
	if err != nil {
		return nil, fmt.Errorf("--server: %w", err)
	}
	if ip := net.ParseIP(u.Hostname()); u.Scheme == "http" && u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("--server %s: plain HTTP off this machine would carry the admin token in the clear; use the server's https:// URL", g.server)
	}
	return &adminClient{base: strings.TrimSuffix(g.server, "/"), token: tok, http: newHTTP(answerTimeout)}, nil
}

// apiError is an error answer of the admin API.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"error"`
	Message string `json:"message"`
	// Report is the test report of a policy refused for failing tests.
	Report json.RawMessage `json:"report,omitempty"`
}

func (e *apiError) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// do sends body (if not nil) as JSON and decodes the answer into out (if not nil).
func (c *adminClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return &unreachableError{server: c.base, err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		e := &apiError{Status: resp.StatusCode}
		if json.Unmarshal(b, e) != nil || e.Code == "" {
			return fmt.Errorf("HTTP %d from %s", resp.StatusCode, path)
		}
		return e
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("unexpected answer from %s: %w", path, err)
		}
	}
	return nil
}

// agentPath is the API path of one agent: its id in a single escaped segment.
func agentPath(id string, suffix string) string {
	return "/v1/agents/" + url.PathEscape(id) + suffix
}
