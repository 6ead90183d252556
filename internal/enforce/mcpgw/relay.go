package mcpgw

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/trace"
)

// The relay is the gateway's own client for the call it forwards most:
// tools/call to an upstream reached over Streamable HTTP with a session
// (every protocol version before 2026-07-28). The SDK's session to the
// upstream is kept for everything else (initialization, lists, change
// notifications, the end of the session); a call is POSTed on that
// session's id and its answer, plain JSON or an event stream, is read
// without decoding the result. A stdio upstream, or one on the sessionless
// protocol, is called through the SDK.

// maxResultBytes bounds an upstream's answer to one call.
const maxResultBytes = 32 << 20

// maxResumes bounds how often an event stream that ended before its
// answer is resumed (Last-Event-ID).
const maxResumes = 5

// progressGrace is how long the progress of a call made through the SDK is
// still passed on after its result.
const progressGrace = time.Second

// errSessionGone means the upstream no longer knows the session (404): the
// call was not run.
var errSessionGone = errors.New("the upstream ended the session")

// statusError is an HTTP status an upstream answered a call with.
type statusError int

func (e statusError) Error() string { return fmt.Sprintf("tools/call: HTTP status %d", int(e)) }

// relayIDs numbers the relay's requests. They are strings, so that they
// never collide with the SDK's numeric ids on the same session.
var relayIDs atomic.Uint64

// callTool runs a decided call of agent on the upstream and returns its
// result as the upstream encoded it. progress, when not nil, gets the upstream's
// progress notifications for the call.
func (u *upstream) callTool(ctx context.Context, agent, tool string, args json.RawMessage, progress func(*mcp.ProgressNotificationParams)) (json.RawMessage, error) {
	for attempt := 0; ; attempt++ {
		s, release, err := u.sessionFor(ctx, agent)
		if err != nil {
			return nil, err
		}
		if !u.relays(s) {
			release()
			params := &mcp.CallToolParams{Name: tool}
			if len(args) > 0 {
				params.Arguments = args
			}
			if progress != nil {
				token := "warden-" + strconv.FormatUint(relayIDs.Add(1), 10)
				params.SetProgressToken(token)
				u.progress.Store(token, progress)
				// The SDK hands notifications over on goroutines of their
				// own, which may run after the result is back: the token is
				// kept a little longer.
				defer time.AfterFunc(progressGrace, func() { u.progress.Delete(token) })
			}
			res, err := call(ctx, u, agent, func(ctx context.Context, s *mcp.ClientSession) (*mcp.CallToolResult, error) {
				return s.CallTool(ctx, params)
			})
			if err != nil {
				return nil, err
			}
			return json.Marshal(res)
		}
		out, timedOut, err := u.relay(ctx, s, tool, args, progress)
		release()
		switch {
		case err == nil:
			return out, nil
		case ownAnswer(err):
			return nil, err
		case errors.Is(err, errSessionGone) && attempt == 0:
			// The spec's answer to a 404: a new session. The call did not
			// run, so it is sent once more on the new one.
			u.lg.Info("upstream: session ended, reconnecting")
			u.drop(s)
			continue
		case !timedOut && !errors.As(err, new(statusError)):
			// The connection failed, or the upstream broke the protocol:
			// the next call starts afresh. A status it answered one call
			// with says nothing of the session.
			u.drop(s)
		}
		u.lg.Warn("upstream: call failed", "err", err)
		return nil, fmt.Errorf("%w: %s: %v", errUnavailable, u.cfg.Name, err)
	}
}

// relays says whether calls on s go through the relay.
func (u *upstream) relays(s *mcp.ClientSession) bool {
	if u.cfg.URL == "" || s.ID() == "" {
		return false
	}
	ir := s.InitializeResult()
	return ir != nil && ir.ProtocolVersion < sessionless
}

// rpcMessage is one JSON-RPC message from an upstream.
type rpcMessage struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *jsonrpc.Error  `json:"error"`
}

type relayParams struct {
	Meta      *relayMeta      `json:"_meta,omitempty"`
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments,omitempty"`
}

type relayMeta struct {
	ProgressToken string `json:"progressToken"`
}

type relayRequest struct {
	JSONRPC string      `json:"jsonrpc"`
	ID      string      `json:"id"`
	Method  string      `json:"method"`
	Params  relayParams `json:"params"`
}

// relay POSTs one tools/call on session s and waits for its answer, for
// as long as the agent does and at most the upstream timeout (timedOut
// says it ran out).
func (u *upstream) relay(ctx context.Context, s *mcp.ClientSession, tool string, args json.RawMessage, progress func(*mcp.ProgressNotificationParams)) (out json.RawMessage, timedOut bool, err error) {
	id := "warden-" + strconv.FormatUint(relayIDs.Add(1), 10)
	params := relayParams{Name: tool, Arguments: args}
	if progress != nil {
		params.Meta = &relayMeta{ProgressToken: id} // the request's id is unique too
	}
	body, err := json.Marshal(relayRequest{JSONRPC: "2.0", ID: id, Method: "tools/call", Params: params})
	if err != nil {
		return nil, false, err
	}
	// The request's context holds none of the agent's values; only the
	// trace it is part of, which goes on to the upstream.
	rctx, cancel := context.WithTimeout(trace.ContextWithSpanContext(context.Background(), trace.SpanContextFromContext(ctx)), u.timeout)
	stop := context.AfterFunc(ctx, cancel)
	resp, err := u.post(rctx, s, body)
	if err != nil {
		stop()
		cancel()
		return nil, rctx.Err() != nil, err
	}
	out, rest, err := u.answer(rctx, s, resp, id, progress)
	timedOut = rctx.Err() != nil
	stop()
	if err != nil {
		rest.Close()
		cancel()
		return nil, timedOut, err
	}
	// What follows the answer (the end of its stream) is read apart, so
	// that the connection is kept for the next call.
	go func() {
		io.Copy(io.Discard, io.LimitReader(rest, maxResultBytes))
		rest.Close()
		cancel()
	}()
	return out, false, nil
}

// answer reads the answer to request id from resp; rest is the body last
// read, for the caller to finish.
func (u *upstream) answer(ctx context.Context, s *mcp.ClientSession, resp *http.Response, id string, progress func(*mcp.ProgressNotificationParams)) (out json.RawMessage, rest io.ReadCloser, err error) {
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, resp.Body, errSessionGone
	default:
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, resp.Body, statusError(resp.StatusCode)
	}
	ct := mediaType(resp.Header.Get("Content-Type"))
	switch ct {
	case "application/json":
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxResultBytes+1))
		if err != nil {
			return nil, resp.Body, fmt.Errorf("tools/call: reading the answer: %w", err)
		}
		if len(data) > maxResultBytes {
			return nil, resp.Body, fmt.Errorf("tools/call: the answer exceeds %d bytes", maxResultBytes)
		}
		var m rpcMessage
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, resp.Body, fmt.Errorf("tools/call: the answer is not a JSON-RPC message: %w", err)
		}
		if !answers(&m, id) {
			return nil, resp.Body, errors.New("tools/call: the answer is for another request")
		}
		out, err := result(&m)
		return out, resp.Body, err
	case "text/event-stream":
		return u.readStream(ctx, s, resp, id, progress)
	}
	return nil, resp.Body, fmt.Errorf("tools/call: unexpected content type %q", ct)
}

// post sends one JSON-RPC message on session s.
func (u *upstream) post(ctx context.Context, s *mcp.ClientSession, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	h := req.Header
	h["Content-Type"] = []string{"application/json"}
	h["Accept"] = []string{"application/json, text/event-stream"}
	h["Mcp-Session-Id"] = []string{s.ID()}
	h["Mcp-Protocol-Version"] = []string{s.InitializeResult().ProtocolVersion}
	return u.http.Do(req)
}

// readStream reads an event stream until the answer to request id, and
// resumes it when it ends before (the server may close a stream early and
// send the answer on the resumed one).
func (u *upstream) readStream(ctx context.Context, s *mcp.ClientSession, resp *http.Response, id string, progress func(*mcp.ProgressNotificationParams)) (json.RawMessage, io.ReadCloser, error) {
	var lastID string
	retry := time.Second
	for resumes := 0; ; resumes++ {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 4096), maxResultBytes)
		var data []byte
		for sc.Scan() {
			line := sc.Bytes()
			if len(line) == 0 {
				if len(data) > 0 {
					out, done, err := u.event(s, data, id, progress)
					if done {
						return out, resp.Body, err
					}
				}
				data = data[:0]
				continue
			}
			field, value, _ := bytes.Cut(line, []byte(":"))
			value = bytes.TrimPrefix(value, []byte(" "))
			switch string(field) {
			case "data":
				if len(data)+len(value) >= maxResultBytes {
					return nil, resp.Body, fmt.Errorf("tools/call: an event of the answer exceeds %d bytes", maxResultBytes)
				}
				if len(data) > 0 {
					data = append(data, '\n')
				}
				data = append(data, value...)
			case "id":
				lastID = string(value)
			case "retry":
				if ms, err := strconv.Atoi(string(value)); err == nil && ms >= 0 {
					retry = time.Duration(ms) * time.Millisecond
				}
			}
		}
		if err := sc.Err(); err != nil {
			return nil, resp.Body, fmt.Errorf("tools/call: reading the event stream: %w", err)
		}
		if lastID == "" || resumes == maxResumes {
			return nil, resp.Body, errors.New("tools/call: the event stream ended without the answer")
		}
		resp.Body.Close()
		select {
		case <-ctx.Done():
			return nil, io.NopCloser(nil), ctx.Err()
		case <-time.After(retry):
		}
		next, err := u.resume(ctx, s, lastID)
		if err != nil {
			return nil, io.NopCloser(nil), err
		}
		resp = next
	}
}

// event handles one event of a call's stream: the answer ends it; a
// request of the server's own is answered (the gateway offers upstreams no
// client features, so only a ping succeeds); the call's progress goes to
// progress; other notifications are dropped.
func (u *upstream) event(s *mcp.ClientSession, data []byte, id string, progress func(*mcp.ProgressNotificationParams)) (json.RawMessage, bool, error) {
	var m rpcMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, true, fmt.Errorf("tools/call: an event is not a JSON-RPC message: %w", err)
	}
	switch {
	case answers(&m, id):
		out, err := result(&m)
		return out, true, err
	case m.Method != "" && len(m.ID) > 0:
		// Answered in the background, a few at a time: an upstream that
		// floods a call with requests gets the rest unanswered.
		select {
		case u.answering <- struct{}{}:
			go func() {
				defer func() { <-u.answering }()
				u.answerRequest(s, m.ID, m.Method)
			}()
		default:
			u.lg.Debug("upstream: too many of its requests at once; one left unanswered", "method", m.Method)
		}
	case m.Method == "notifications/progress" && progress != nil:
		var p mcp.ProgressNotificationParams
		if json.Unmarshal(m.Params, &p) == nil && p.ProgressToken == id {
			progress(&p)
		}
	}
	return nil, false, nil
}

// maxAnswering is how many of an upstream's requests are answered at once.
const maxAnswering = 8

// answerRequest answers a request the upstream sent during a call: a ping
// with an empty result, anything else with an error.
func (u *upstream) answerRequest(s *mcp.ClientSession, id json.RawMessage, method string) {
	msg := map[string]any{"jsonrpc": "2.0", "id": id, "result": struct{}{}}
	if method != "ping" {
		delete(msg, "result")
		msg["error"] = map[string]any{"code": jsonrpc.CodeMethodNotFound, "message": method + " is not offered through the gateway"}
	}
	body, _ := json.Marshal(msg)
	ctx, cancel := context.WithTimeout(context.Background(), u.timeout)
	defer cancel()
	resp, err := u.post(ctx, s, body)
	if err != nil {
		u.lg.Debug("upstream: cannot answer its request", "method", method, "err", err)
		return
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
}

// resume reopens a call's event stream after the event lastID.
func (u *upstream) resume(ctx context.Context, s *mcp.ClientSession, lastID string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.cfg.URL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", s.ID())
	req.Header.Set("Mcp-Protocol-Version", s.InitializeResult().ProtocolVersion)
	req.Header.Set("Last-Event-ID", lastID)
	resp, err := u.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusNotFound {
		resp.Body.Close()
		return nil, errors.New("tools/call: the upstream ended the session during the call")
	}
	if ct := mediaType(resp.Header.Get("Content-Type")); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		resp.Body.Close()
		return nil, fmt.Errorf("tools/call: resuming the event stream: HTTP status %d, %q", resp.StatusCode, ct)
	}
	return resp, nil
}

// answers says whether m is the answer to request id.
func answers(m *rpcMessage, id string) bool {
	if m.Method != "" || (m.Result == nil && m.Error == nil) {
		return false
	}
	var got string
	return json.Unmarshal(m.ID, &got) == nil && got == id
}

// result is an answer's result, or the upstream's JSON-RPC error.
func result(m *rpcMessage) (json.RawMessage, error) {
	if m.Error != nil {
		return nil, m.Error
	}
	if t := bytes.TrimLeft(m.Result, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return nil, errors.New("tools/call: the result is not a JSON object")
	}
	return m.Result, nil
}

// mediaType is a header's media type without parameters, lower case.
func mediaType(v string) string {
	t, _, _ := strings.Cut(v, ";")
	return strings.ToLower(strings.TrimSpace(t))
}
