// Package httpproxy is Warden's HTTP reverse proxy enforcement point: an
// agent calls an API through it, every request is authenticated and
// decided (action "http:<METHOD>", resource "<route>/<path>"), and an
// allowed one is forwarded without the agent's credentials and with the
// upstream's own, which agents never hold.
package httpproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/enforce"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/provenance"
	"github.com/warden-run/warden/internal/tracing"
	"github.com/warden-run/warden/internal/wire"
)

// Config is the proxy's part of gateway.yaml (http:).
type Config struct {
	// Resource is the resource identifier (RFC 8707) the agents' tokens
	// must be issued for. Default: the gateway's origin (http://host:port).
	Resource string `yaml:"resource"`
	// Routes map path prefixes to upstream APIs.
	Routes []Route `yaml:"routes"`
	// MaxBodyBytes bounds a request body; MaxRedactBytes a response the
	// proxy must read to redact. Defaults 1 MiB and 8 MiB.
	MaxBodyBytes   int64 `yaml:"max_body_bytes"`
	MaxRedactBytes int64 `yaml:"max_redact_bytes"`
}

// Route is one upstream API.
type Route struct {
	// Name is where its requests are in policy: resource "<name>/<path>".
	Name string `yaml:"name"`
	// Prefix is the path at the proxy ("/crm/"); Upstream the URL it maps
	// to ("https://crm.internal/api/"): /crm/customers/7 goes to
	// https://crm.internal/api/customers/7.
	Prefix   string `yaml:"prefix"`
	Upstream string `yaml:"upstream"`
	// Trust is trusted or untrusted: an allowed request to an untrusted
	// API taints the agent ("untrusted_content") for its later decisions.
	Trust string `yaml:"trust"`
	// Attributes are the route's catalog attributes, sent with every
	// decision about it (such as egress: true, sensitivity).
	Attributes map[string]any `yaml:"attributes"`
	// Credential is the upstream's own credential, added to every
	// forwarded request.
	Credential *Credential `yaml:"credential"`

	target *url.URL
	secret string
}

// Credential is a header the proxy adds for the upstream, its value read
// from an environment variable or a file at start. It is never logged.
type Credential struct {
	Header string `yaml:"header"` // default Authorization
	Prefix string `yaml:"prefix"` // such as "Bearer "
	Env    string `yaml:"env"`
	File   string `yaml:"file"`
}

var routeName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*$`)

// Check fills defaults, reads the credentials, and says everything that is
// wrong. origin is the gateway's origin.
func (c *Config) Check(origin string) error {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if c.Resource == "" {
		c.Resource = origin
	} else if u, err := url.Parse(c.Resource); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(u.Path, "{}") {
		bad("http.resource %q: the absolute http(s) URL agents' tokens for the proxy are issued for, without user, query or fragment", c.Resource)
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.MaxRedactBytes == 0 {
		c.MaxRedactBytes = 8 << 20
	}
	seen := map[string]bool{}
	for i := range c.Routes {
		r := &c.Routes[i]
		at := fmt.Sprintf("http.routes[%d]", i)
		if !routeName.MatchString(r.Name) {
			bad("%s.name %q: lower-case segments joined by '/'", at, r.Name)
		}
		if !strings.HasPrefix(r.Prefix, "/") || !strings.HasSuffix(r.Prefix, "/") || r.Prefix == "/" {
			bad("%s (%s).prefix %q: a path that starts and ends with '/', not the root", at, r.Name, r.Prefix)
		} else if seen[r.Prefix] {
			bad("%s (%s).prefix %q: declared twice", at, r.Name, r.Prefix)
		}
		seen[r.Prefix] = true
		u, err := url.Parse(r.Upstream)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			bad("%s (%s).upstream: an http(s) URL without query or fragment", at, r.Name)
		} else if u.User != nil {
			bad("%s (%s).upstream: no user or password in the URL; give the upstream's credential in credential:", at, r.Name)
		} else {
			r.target = u
		}
		if r.Trust != enforce.Trusted && r.Trust != enforce.Untrusted {
			bad("%s (%s).trust %q: trusted or untrusted (say which; there is no default)", at, r.Name, r.Trust)
		}
		for _, p := range policy.CheckAttributes(r.Attributes) {
			bad("%s (%s).attributes.%s", at, r.Name, p)
		}
		if cr := r.Credential; cr != nil {
			if cr.Header == "" {
				cr.Header = "Authorization"
			}
			switch {
			case (cr.Env == "") == (cr.File == ""):
				bad("%s (%s).credential: env or file, exactly one", at, r.Name)
			case cr.Env != "":
				v, ok := os.LookupEnv(cr.Env)
				if !ok || v == "" {
					bad("%s (%s).credential: the environment variable %s is not set", at, r.Name, cr.Env)
				}
				r.secret = cr.Prefix + v
			default:
				b, err := os.ReadFile(cr.File)
				if err != nil {
					bad("%s (%s).credential: %v", at, r.Name, err)
				} else if strings.TrimSpace(string(b)) == "" {
					bad("%s (%s).credential: the file %s is empty", at, r.Name, cr.File)
				}
				r.secret = cr.Prefix + strings.TrimSpace(string(b))
			}
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// Deps are the parts the proxy works with.
type Deps struct {
	Decider enforce.Decider
	Edge    *enforce.Edge
	Logger  *slog.Logger
	// Relayed, when set, is told of every answer the proxy relays to an
	// agent: whom, and how many bytes of body (the usage the behavioural
	// monitor compares with the agent's baseline).
	Relayed func(agent string, bytes int)
	// Provenance, when set, is what agents read (shared with the MCP
	// gateway): every answer relayed is a read, and every decision says
	// where its arguments came from.
	Provenance *provenance.Store
}

// Proxy is the reverse proxy. It serves the routes' prefixes.
type Proxy struct {
	cfg    Config
	d      Deps
	routes []*Route // longest prefix first
	rp     *httputil.ReverseProxy
}

type ctxKey struct{}

// forward is what the proxy knows of an allowed request on its way.
type forward struct {
	agent  string
	echo   map[string]any // the request's arguments
	trust  string
	index  int64 // the audit index of the decision that allowed it
	route  *Route
	rest   string
	redact [][]string
	code   int // set when the response was refused
}

// New makes a proxy; cfg must have passed Check.
func New(cfg Config, d Deps) *Proxy {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{cfg: cfg, d: d}
	for i := range cfg.Routes {
		p.routes = append(p.routes, &cfg.Routes[i])
	}
	slices.SortFunc(p.routes, func(a, b *Route) int { return len(b.Prefix) - len(a.Prefix) })
	p.rp = &httputil.ReverseProxy{
		// The request's trace goes on to the upstream (W3C traceparent).
		Transport:      tracing.Transport{Base: http.DefaultTransport},
		Rewrite:        p.rewrite,
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.upstreamError,
	}
	return p
}

// Prefixes are the paths the proxy serves.
func (p *Proxy) Prefixes() []string {
	var out []string
	for _, r := range p.routes {
		out = append(out, r.Prefix)
	}
	return out
}

// ServeHTTP authenticates, decides and forwards one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !wire.CleanPath(r.URL.Path) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "the path must not hold '.', '..' or empty segments, '\\' or ';'"})
		return
	}
	if r.Method == http.MethodTrace {
		// An upstream that echoes the request would answer with the
		// credential the proxy adds.
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "TRACE is not proxied"})
		return
	}
	for name := range r.Header {
		if wire.AliasOfAgentHeader(name) {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("the header %s is read as %s by some servers: not accepted", name, strings.ReplaceAll(name, "_", "-"))})
			return
		}
	}
	route := p.route(r.URL.Path)
	if route == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no route"})
		return
	}
	ctx, span := tracer.Start(tracing.FromRequest(r.Context(), r), "http "+r.Method, trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	r = r.WithContext(ctx)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("warden.route", route.Name))
	}
	if r.Header.Get("Upgrade") != "" {
		// A switched protocol would carry requests nobody decides.
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "protocol upgrades are not proxied"})
		return
	}
	htu := p.origin(r) + r.URL.EscapedPath()
	caller, ok := p.d.Edge.Authenticate(w, r, htu)
	if !ok {
		return
	}
	if v := r.Header.Get(wire.UserInputHeader); v != "" && p.d.Provenance != nil {
		text, err := wire.DecodeUserInput(v)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		p.d.Provenance.Session(caller.Agent, "").AddUserInput(text)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, p.cfg.MaxBodyBytes))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": fmt.Sprintf("request body over %d bytes", p.cfg.MaxBodyBytes)})
		return
	}
	if len(r.Header.Values("Content-Type")) > 1 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "one Content-Type header, not several"})
		return
	}
	args, body, err := wire.HTTPArgs(r.URL.Query(), r.Header.Get("Content-Type"), body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	// The upstream gets the body policy decided on: JSON re-encoded is
	// UTF-8, whatever charset the agent named.
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err == nil && wire.IsJSON(mt) {
		r.Header.Set("Content-Type", mt)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.Header.Set("Content-Length", strconv.Itoa(len(body)))
	rest := strings.TrimPrefix(r.URL.Path, route.Prefix)
	attrs := make(map[string]any, len(route.Attributes)+1)
	for k, v := range route.Attributes {
		attrs[k] = v
	}
	if attrs["trust"] != enforce.Untrusted {
		attrs["trust"] = route.Trust
	}
	req := &decide.Request{Token: caller.Token, Action: "http:" + r.Method,
		Resource: decide.Resource{Kind: "http.route", ID: route.Name + "/" + rest, Attributes: attrs},
		Args:     args,
		Context:  decide.RequestContext{Source: decide.Source{IP: caller.IP}}}
	var echo map[string]any
	if p.d.Provenance != nil {
		d := json.NewDecoder(bytes.NewReader(args))
		d.UseNumber()
		var m map[string]any
		if d.Decode(&m) == nil && m != nil {
			// The path past the route names a target as an argument does
			// (/out/send/drop@evil.example).
			m["path"] = rest
			echo = m
			req.Context.Provenance = p.d.Provenance.Session(caller.Agent, "").Args(m)
		}
	}
	d, err := p.d.Decider.Decide(r.Context(), req)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	switch d.Outcome {
	case policy.Allow:
	case policy.PendingApproval:
		writeJSON(w, http.StatusForbidden, map[string]any{"error": "approval_required", "decision_id": d.ID, "approval": d.Approval})
		return
	default:
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "denied", "decision_id": d.ID})
		return
	}
	err = enforce.CheckObligations(d.Obligations, "redact")
	var fields [][]string
	if err == nil {
		fields, err = enforce.Redactions(d.Obligations)
	}
	if err != nil {
		p.d.Logger.Warn("http proxy: a decision's obligations cannot be applied; refused", "decision_id", d.ID, "err", err)
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "denied", "decision_id": d.ID})
		return
	}
	trust := provenance.Trusted
	if attrs["trust"] == enforce.Untrusted {
		trust = provenance.Untrusted
	}
	f := &forward{agent: caller.Agent, echo: echo, trust: trust, index: d.AuditIndex, route: route, rest: rest, redact: fields}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, f)))
}

func (p *Proxy) route(path string) *Route {
	for _, r := range p.routes {
		if strings.HasPrefix(path, r.Prefix) {
			return r
		}
	}
	return nil
}

// origin is the scheme and host the agent used, as the proxy's resource
// names them.
func (p *Proxy) origin(r *http.Request) string {
	if u, err := url.Parse(p.cfg.Resource); err == nil && u.Host != "" {
		return u.Scheme + "://" + u.Host
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// rewrite points the request at the upstream and swaps the credentials:
// the agent's go nowhere, the upstream's are added.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	f := pr.In.Context().Value(ctxKey{}).(*forward)
	target := *f.route.target
	pr.Out.URL.Scheme, pr.Out.URL.Host = target.Scheme, target.Host
	pr.Out.URL.Path = strings.TrimSuffix(target.Path, "/") + "/" + f.rest
	pr.Out.URL.RawPath = ""
	pr.Out.Host = ""
	// The body was read whole and decided on: no trailers come after it,
	// where an upstream that merges them into the headers would read what
	// nobody decided.
	pr.Out.Trailer = nil
	pr.Out.TransferEncoding = nil
	// The answer comes back decoded (the transport asks for gzip and
	// unpacks it itself): what the agent reads is read for its values, not
	// compressed bytes.
	pr.Out.Header.Del("Accept-Encoding")
	pr.Out.Header.Del(wire.UserInputHeader) // the user's request is Warden's, not the upstream's
	// Headers some frameworks read as the method go too: the upstream runs
	// the method that was decided.
	for _, h := range wire.AgentHeaders {
		pr.Out.Header.Del(h)
	}
	if len(f.redact) > 0 {
		// A part of the answer (Range) is not the document the fields are
		// paths in: the whole is asked for, and redacted.
		pr.Out.Header.Del("Range")
		pr.Out.Header.Del("If-Range")
	}
	if c := f.route.Credential; c != nil {
		pr.Out.Header.Set(c.Header, f.route.secret)
	}
	pr.SetXForwarded()
	// The host the agent reached is the proxy's resource, not the Host
	// header it sent: an upstream choosing a tenant by it reads this.
	if u, err := url.Parse(p.cfg.Resource); err == nil && u.Host != "" {
		pr.Out.Header.Set("X-Forwarded-Host", u.Host)
	}
}

// modifyResponse masks the fields a redact obligation names in a JSON
// answer; an answer that must be redacted but cannot be read is refused.
func (p *Proxy) modifyResponse(resp *http.Response) (err error) {
	f := resp.Request.Context().Value(ctxKey{}).(*forward)
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return fmt.Errorf("%w: the upstream switched protocols", errRefused)
	}
	if p.d.Relayed != nil || p.d.Provenance != nil {
		defer func() {
			if err == nil { // what is relayed, after redaction
				c := &counted{ReadCloser: resp.Body, done: func(n int) {
					if p.d.Relayed != nil {
						p.d.Relayed(f.agent, n)
					}
				}}
				if p.d.Provenance != nil {
					c.keep = maxRead
					mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
					done := c.done
					c.done = func(n int) {
						done(n)
						p.read(f, mt, c.kept)
					}
				}
				resp.Body = c
			}
		}()
	}
	if len(f.redact) == 0 {
		return nil
	}
	if resp.StatusCode == http.StatusPartialContent {
		return fmt.Errorf("%w: a part of an answer cannot be redacted", errRefused)
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt != "application/json" && !strings.HasSuffix(mt, "+json") {
		return fmt.Errorf("%w: a %q answer cannot be redacted", errRefused, mt)
	}
	if resp.Header.Get("Content-Encoding") != "" {
		return fmt.Errorf("%w: an encoded answer cannot be redacted", errRefused)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, p.cfg.MaxRedactBytes+1))
	resp.Body.Close()
	if err != nil {
		return err
	}
	if int64(len(b)) > p.cfg.MaxRedactBytes {
		return fmt.Errorf("%w: the answer is over %d bytes, too large to redact", errRefused, p.cfg.MaxRedactBytes)
	}
	out := b
	if len(bytes.TrimSpace(b)) > 0 { // an empty answer holds nothing
		if out, err = enforce.RedactDocument(b, f.redact); err != nil {
			return fmt.Errorf("%w: %v", errRefused, err)
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(out))
	resp.ContentLength = int64(len(out))
	resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
	// What describes the whole answer would tell of what was masked: a
	// digest or an ETag of it is a hash to guess a short field against.
	for _, h := range []string{"ETag", "Digest", "Repr-Digest", "Content-Digest", "Content-MD5", "Content-Location", "Last-Modified"} {
		resp.Header.Del(h)
	}
	return nil
}

var errRefused = errors.New("answer refused")

// counted counts the bytes read through it and reports them once, when it
// is closed (the reverse proxy closes every answer's body), keeping the
// first keep bytes.
type counted struct {
	io.ReadCloser
	n    int
	keep int
	kept []byte
	once sync.Once
	done func(int)
}

func (c *counted) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	c.n += n
	if room := c.keep - len(c.kept); room > 0 {
		c.kept = append(c.kept, b[:min(n, room)]...)
	}
	return n, err
}

// maxRead is how much of an answer is read for its values.
const maxRead = 64 << 10

// read notes an answer relayed to the agent (its first bytes) as a read.
func (p *Proxy) read(f *forward, mediaType string, body []byte) {
	var content any = string(body)
	if wire.IsJSON(mediaType) {
		d := json.NewDecoder(bytes.NewReader(body))
		d.UseNumber()
		var v any
		if d.Decode(&v) == nil {
			content = v
		}
	}
	p.d.Provenance.Session(f.agent, "").Record(provenance.Read{Upstream: f.route.Name, Tool: f.route.Name + "/" + f.rest,
		Trust: f.trust, AuditIndex: f.index}, content, f.echo)
}

func (c *counted) Close() error {
	c.once.Do(func() { c.done(c.n) })
	return c.ReadCloser.Close()
}

// upstreamError answers when the upstream cannot be reached or its answer
// was refused: 502, never the upstream's content.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	p.d.Logger.Warn("http proxy: upstream failed", "path", r.URL.Path, "err", err)
	msg := "upstream unavailable"
	if errors.Is(err, errRefused) {
		msg = "the upstream's answer could not be redacted as policy requires"
	}
	writeJSON(w, http.StatusBadGateway, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// tracer makes the proxy's spans (no-ops unless tracing is on).
var tracer = tracing.Tracer()
