package mcpgw

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/yosida95/uritemplate/v3"

	"github.com/warden-run/warden/internal/tracing"
)

// errUnavailable means an upstream could not be reached or failed
// mid-call; the agent is told so, never that the call went through.
var errUnavailable = errors.New("upstream unavailable")

// upstream is the gateway's client of one upstream server: the gateway's
// own MCP session, (re)connected on demand, and for a command restarted
// when it exits; over HTTP, a session per agent for the agents' calls. It
// keeps the server's tools, resources and prompts, refreshed when the
// server says they changed.
type upstream struct {
	cfg     Server
	timeout time.Duration
	lg      *slog.Logger
	client  *mcp.Client
	http    *http.Client

	connect sync.Mutex // one connection attempt at a time
	// starting is set while a connection attempt is under way and the
	// upstream has no session: lists leave it out and say so.
	starting atomic.Bool
	// kicked is set while a list has started a connection attempt: one
	// at a time, however many lists an agent sends.
	kicked atomic.Bool
	mu     sync.Mutex
	sess   *mcp.ClientSession
	lists  catalogue
	closed bool
	// restarts counts the command's restarts after it exited.
	restarts int
	// progress maps the progress tokens of calls made through the SDK to
	// where their progress goes.
	progress sync.Map
	// sysProcAttr is how a wrap starts its command (as another user).
	sysProcAttr *syscall.SysProcAttr
	// failed is when the last connection attempt failed, and why: for a
	// while after, uses fail at once instead of each waiting for a dead
	// upstream.
	failed    time.Time
	failedErr error
	// agents are the agents' sessions (see upstreamsessions.go), at most
	// maxAgents, swept of idle ones by a goroutine started with the first
	// until done is closed. After a session could not be opened, no other
	// is tried for a while.
	agents         map[string]*upstreamSession
	maxAgents      int
	sweeping       sync.Once
	done           chan struct{}
	agentFailed    time.Time
	agentFailedErr error
	// answering bounds the upstream's requests answered at once.
	answering chan struct{}
}

// retryAfter is how long an upstream that could not be reached is not
// tried again.
const retryAfter = 2 * time.Second

// catalogue is what an upstream offers.
type catalogue struct {
	tools     []*mcp.Tool
	resources []*mcp.Resource
	templates []template
	prompts   []*mcp.Prompt
}

// template is a resource template and its compiled URI template.
type template struct {
	*mcp.ResourceTemplate
	uri *uritemplate.Template
}

func newUpstream(cfg Server, timeout time.Duration, lg *slog.Logger) *upstream {
	// Many calls go to the upstream at once: keep enough connections open
	// for them (the default keeps two,
	// and closes and reopens the rest for every burst). Calls are bounded
	// by their contexts.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	u := &upstream{cfg: cfg, timeout: timeout, lg: lg.With("upstream", cfg.Name), http: &http.Client{Transport: tracing.Transport{Base: tr}},
		agents: map[string]*upstreamSession{}, maxAgents: maxAgentSessions, done: make(chan struct{}),
		answering: make(chan struct{}, maxAnswering)}
	// A change of the lists is heard on the gateway's own session; the
	// agents' sessions hear it too, and say nothing new.
	refresh := func(s *mcp.ClientSession) {
		u.mu.Lock()
		own := s == u.sess
		u.mu.Unlock()
		if own {
			go u.refresh()
		}
	}
	u.client = mcp.NewClient(&mcp.Implementation{Name: "warden-gateway", Version: "1"}, &mcp.ClientOptions{
		// No roots, sampling or elicitation: the gateway offers upstreams
		// nothing of the agents' side.
		Capabilities:               &mcp.ClientCapabilities{},
		ToolListChangedHandler:     func(_ context.Context, r *mcp.ToolListChangedRequest) { refresh(r.Session) },
		ResourceListChangedHandler: func(_ context.Context, r *mcp.ResourceListChangedRequest) { refresh(r.Session) },
		PromptListChangedHandler:   func(_ context.Context, r *mcp.PromptListChangedRequest) { refresh(r.Session) },
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
			if f, ok := u.progress.Load(r.Params.ProgressToken); ok {
				f.(func(*mcp.ProgressNotificationParams))(r.Params)
			}
		},
	})
	return u
}

// session returns the gateway's live session, connecting first when there
// is none.
func (u *upstream) session(ctx context.Context) (*mcp.ClientSession, error) {
	u.mu.Lock()
	s, closed := u.sess, u.closed
	u.mu.Unlock()
	if s != nil {
		return s, nil
	}
	if closed {
		return nil, fmt.Errorf("%w: %s: the gateway is closing", errUnavailable, u.cfg.Name)
	}
	u.connect.Lock()
	defer u.connect.Unlock()
	u.mu.Lock()
	s, failed, failedErr := u.sess, u.failed, u.failedErr
	u.mu.Unlock()
	if s != nil {
		return s, nil
	}
	if time.Since(failed) < retryAfter {
		return nil, failedErr
	}
	fail := func(what string, err error) (*mcp.ClientSession, error) {
		u.lg.Warn("upstream: "+what, "err", err)
		err = fmt.Errorf("%w: %s: %v", errUnavailable, u.cfg.Name, err)
		u.mu.Lock()
		u.failed, u.failedErr = time.Now(), err
		u.mu.Unlock()
		return nil, err
	}
	ctx, cancel := detach(ctx, u.cfg.startTimeout())
	defer cancel()
	u.starting.Store(true)
	defer u.starting.Store(false)
	began := time.Now()
	u.lg.Info("upstream: starting", "timeout", u.cfg.startTimeout())
	s, err := u.client.Connect(ctx, u.transport(), nil)
	if err != nil {
		return fail("cannot connect", err)
	}
	lists, err := fetchLists(ctx, s)
	if err != nil {
		s.Close()
		return fail("cannot list what it offers", err)
	}
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		s.Close()
		return nil, fmt.Errorf("%w: %s: the gateway is closing", errUnavailable, u.cfg.Name)
	}
	u.sess, u.lists = s, lists
	u.mu.Unlock()
	u.lg.Info("upstream: connected", "after", time.Since(began).Round(time.Millisecond), "tools", len(lists.tools), "resources", len(lists.resources), "templates", len(lists.templates), "prompts", len(lists.prompts))
	for name := range u.cfg.Tools {
		if !slices.ContainsFunc(lists.tools, func(t *mcp.Tool) bool { return t.Name == name }) {
			// A misspelt name: its attributes reach no decision.
			u.lg.Warn("upstream: gateway.yaml sets attributes of a tool the upstream does not offer", "tool", name)
		}
	}
	go u.watch(s)
	return s, nil
}

// transport is how to reach the upstream: Streamable HTTP, or a fresh
// child process over stdio.
func (u *upstream) transport() mcp.Transport {
	if u.cfg.URL != "" {
		return &mcp.StreamableClientTransport{Endpoint: u.cfg.URL, HTTPClient: u.http, MaxRetries: 1}
	}
	cmd := exec.Command(u.cfg.Command[0], u.cfg.Command[1:]...)
	cmd.Env = commandEnv(u.cfg)
	cmd.SysProcAttr = u.sysProcAttr
	cmd.Stderr = &lineLogger{lg: u.lg}
	return &mcp.CommandTransport{Command: cmd, TerminateDuration: 2 * time.Second}
}

// passedEnv are the variables of the gateway's environment a command gets.
var passedEnv = []string{"PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR"}

// commandEnv is an upstream command's environment.
func commandEnv(s Server) []string {
	var env []string
	if s.InheritEnv {
		for _, kv := range os.Environ() {
			if name, _, _ := strings.Cut(kv, "="); !wardenVariable(name) {
				env = append(env, kv)
			}
		}
	} else {
		for _, k := range passedEnv {
			if v, ok := os.LookupEnv(k); ok {
				env = append(env, k+"="+v)
			}
		}
	}
	for k, v := range s.Env {
		env = append(env, k+"="+v)
	}
	return env
}

// watch waits for a session to end. A command that exits is started again
// (with a growing pause when it keeps exiting); an HTTP upstream is
// reconnected on its next use.
func (u *upstream) watch(s *mcp.ClientSession) {
	err := s.Wait()
	u.mu.Lock()
	if u.sess == s {
		u.sess = nil
	}
	closed := u.closed
	u.restarts++
	n := u.restarts
	u.mu.Unlock()
	if closed {
		return
	}
	u.lg.Warn("upstream: session ended", "err", err)
	if len(u.cfg.Command) == 0 {
		return
	}
	pause := min(time.Duration(n)*200*time.Millisecond, 5*time.Second)
	time.Sleep(pause)
	if _, err := u.session(context.Background()); err == nil {
		u.lg.Info("upstream: command restarted", "restarts", n)
	}
}

// drop forgets a session that failed, so that the next use reconnects.
func (u *upstream) drop(s *mcp.ClientSession) {
	u.mu.Lock()
	if u.sess == s {
		u.sess = nil
	}
	u.dropAgentLocked(s)
	u.mu.Unlock()
	closeAll(s) // the call that found it broken does not wait
}

// refresh reads the upstream's lists again after it said they changed.
func (u *upstream) refresh() {
	u.mu.Lock()
	s := u.sess
	u.mu.Unlock()
	if s == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), u.timeout)
	defer cancel()
	lists, err := fetchLists(ctx, s)
	if err != nil {
		u.lg.Warn("upstream: cannot refresh its lists", "err", err)
		return
	}
	u.mu.Lock()
	if u.sess == s {
		u.lists = lists
	}
	u.mu.Unlock()
}

// offers returns what the upstream offers, connecting when needed.
// listWait is how long a list waits for an upstream that is not
// connected yet before it leaves it out as starting.
const listWait = 2 * time.Second

// listed is what u offers, for a list an agent asked for: an upstream
// that is starting (its command still downloading, say) is not waited
// for past listWait, but reported as starting, while its start goes on.
func (u *upstream) listed(ctx context.Context) (catalogue, bool, error) {
	u.mu.Lock()
	connected := u.sess != nil
	u.mu.Unlock()
	if !connected {
		if u.starting.Load() || !u.kicked.CompareAndSwap(false, true) {
			return catalogue{}, true, nil
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer u.kicked.Store(false)
			u.session(context.WithoutCancel(ctx))
		}()
		select {
		case <-done:
		case <-time.After(listWait):
			return catalogue{}, true, nil
		case <-ctx.Done():
			return catalogue{}, false, ctx.Err()
		}
	}
	c, err := u.offers(ctx)
	return c, false, err
}

func (u *upstream) offers(ctx context.Context) (catalogue, error) {
	if _, err := u.session(ctx); err != nil {
		return catalogue{}, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.lists, nil
}

// call runs one request of agent on the upstream, bounded by the upstream
// timeout. An error of the upstream's own (a JSON-RPC error) is
// returned as it is; any other failure drops the session and is
// errUnavailable.
func call[T any](ctx context.Context, u *upstream, agent string, f func(context.Context, *mcp.ClientSession) (T, error)) (T, error) {
	var zero T
	s, release, err := u.sessionFor(ctx, agent)
	if err != nil {
		return zero, err
	}
	defer release()
	// The call gets the agent's cancellation and the upstream's timeout,
	// but none of the agent's request values: the SDK keeps the agent's
	// protocol version there, which is not the upstream session's.
	ctx, cancel := detach(ctx, u.timeout)
	defer cancel()
	out, err := f(ctx, s)
	if err == nil {
		return out, nil
	}
	if ownAnswer(err) {
		return zero, err
	}
	if ctx.Err() == nil {
		// Not our deadline: the connection itself failed.
		u.drop(s)
	}
	u.lg.Warn("upstream: call failed", "err", err)
	return zero, fmt.Errorf("%w: %s: %v", errUnavailable, u.cfg.Name, err)
}

// detach is a context that ends when parent does or after timeout, and
// holds none of parent's values.
func detach(parent context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	stop := context.AfterFunc(parent, cancel)
	return ctx, func() { stop(); cancel() }
}

// ownAnswer says whether err is an error the upstream answered with, as
// opposed to a failure to reach it: the SDK reports a closed or rejected
// connection with JSON-RPC codes of its own (-32003 to -32005).
func ownAnswer(err error) bool {
	var rpc *jsonrpc.Error
	if !errors.As(err, &rpc) || errors.Is(err, mcp.ErrConnectionClosed) {
		return false
	}
	return rpc.Code < -32005 || rpc.Code > -32003
}

func (u *upstream) close() {
	u.mu.Lock()
	if !u.closed {
		close(u.done)
	}
	u.closed = true
	s := u.sess
	u.sess = nil
	u.mu.Unlock()
	u.closeAgents()
	if s != nil {
		s.Close()
	}
}

func fetchLists(ctx context.Context, s *mcp.ClientSession) (catalogue, error) {
	var c catalogue
	caps := s.InitializeResult().Capabilities
	if caps == nil {
		return c, nil
	}
	if caps.Tools != nil {
		for t, err := range s.Tools(ctx, nil) {
			if err != nil {
				return c, fmt.Errorf("tools/list: %w", err)
			}
			c.tools = append(c.tools, t)
		}
	}
	if caps.Resources != nil {
		for r, err := range s.Resources(ctx, nil) {
			if err != nil {
				return c, fmt.Errorf("resources/list: %w", err)
			}
			c.resources = append(c.resources, r)
		}
		for t, err := range s.ResourceTemplates(ctx, nil) {
			var rpc *jsonrpc.Error
			if errors.As(err, &rpc) && rpc.Code == jsonrpc.CodeMethodNotFound {
				break // a server with resources need not have templates
			}
			if err != nil {
				return c, fmt.Errorf("resources/templates/list: %w", err)
			}
			u, err := uritemplate.New(t.URITemplate)
			if err != nil {
				continue // not a URI template: it can match nothing
			}
			c.templates = append(c.templates, template{t, u})
		}
	}
	if caps.Prompts != nil {
		for p, err := range s.Prompts(ctx, nil) {
			if err != nil {
				return c, fmt.Errorf("prompts/list: %w", err)
			}
			c.prompts = append(c.prompts, p)
		}
	}
	return c, nil
}

// lineLogger logs what a command writes to its standard error, a line at
// a time (long lines cut). os/exec copies the command's output to it from
// a goroutine of its own, which ends with the command.
type lineLogger struct {
	lg   *slog.Logger
	mu   sync.Mutex
	part []byte // an unfinished line
}

const maxLogLine = 512

func (l *lineLogger) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rest := b
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		l.emit(append(l.part, rest[:i]...))
		l.part = l.part[:0]
		rest = rest[i+1:]
	}
	if len(l.part)+len(rest) > maxLogLine {
		l.emit(append(l.part, rest...))
		l.part = l.part[:0]
	} else {
		l.part = append(l.part, rest...)
	}
	return len(b), nil
}

func (l *lineLogger) emit(line []byte) {
	s := string(line)
	if len(s) > maxLogLine {
		s = s[:maxLogLine] + "..."
	}
	l.lg.Debug("upstream: stderr", "line", s)
}
