// Package console is Warden's web console for the people who run it:
// server-rendered pages at /ui, behind sign-in, with no script of its own
// and a Content-Security-Policy that allows none.
//
// A console session is a random id in an HttpOnly, SameSite=Strict cookie;
// the credential it was opened with (the admin token, or a person's
// session from `warden login`) stays on the server and is checked again on
// every request, so that a rotated token or an ended session closes the
// console at once. Every form carries a CSRF token.
package console

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/humans"
	"github.com/warden-run/warden/internal/monitor"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
)

//go:embed templates/*.html static/*.css
var files embed.FS

// Cookie names: the console session, and the CSRF token of the sign-in
// form before there is a session. Over HTTPS they carry the __Host-
// prefix: only this host, over a secure connection, can set them, not a
// subdomain or a plain-HTTP site (cookies are not kept apart by port: a
// site on another port of the same host could; the posts' origin check
// and the OpenID sign-in's confirmation are what stop it).
const (
	sessionCookie = "warden_ui"
	loginCookie   = "warden_ui_login"
)

func (c *Console) name(cookie string) string {
	if c.cfg.SecureCookies {
		return "__Host-" + cookie
	}
	return cookie
}

// sameOrigin says whether a post comes from the console's own pages: its
// Origin (or, without one, its Referer) is the console's. A request with
// neither is not a browser's form, which always sends Origin on a post.
func (c *Console) sameOrigin(r *http.Request) bool {
	if c.cfg.Origin == "" {
		return true
	}
	if o := r.Header.Get("Origin"); o != "" {
		return o == c.cfg.Origin
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		return ref == c.cfg.Origin || strings.HasPrefix(ref, c.cfg.Origin+"/")
	}
	return r.Header.Get("Sec-Fetch-Site") == "" || r.Header.Get("Sec-Fetch-Site") == "same-origin"
}

// securityHeaders are sent with every answer: no script, no frame, no
// inline style, nothing cached.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
	"X-Content-Type-Options":  "nosniff",
	"Referrer-Policy":         "same-origin", // so that a post carries its Origin (with no-referrer it is "null")
	"Cache-Control":           "no-store",
	"X-Frame-Options":         "DENY",
}

// Deps are what the console reads and how it checks credentials.
type Deps struct {
	// Authenticate checks an admin token or a person's session token.
	Authenticate func(ctx context.Context, token string) (humans.Principal, bool)
	// Allows says whether roles hold a permission.
	Allows func(roles []string, p humans.Permission) bool
	// API serves an admin API request (a /v1/ path) in process with the
	// signed-in person's credential, answering into w: every change the
	// console makes, and what it reads beyond the overview, goes through
	// the API's own permission checks, validation and audit events.
	API func(from *http.Request, token, method, path string, body []byte, w http.ResponseWriter)
	// TokenRevoked, when set, says whether a token was revoked by its id.
	TokenRevoked func(jti string) bool
	// Risk, when set, is an agent's risk as the monitor sees it.
	Risk     func(agent string) (monitor.Risk, bool)
	Agents   func(ctx context.Context, f store.AgentFilter) ([]store.Agent, error)
	Audit    *audit.Log
	Policies *policy.Registry
	Logger   *slog.Logger
	// OIDC, when set, signs people in at their OpenID provider.
	OIDC *OIDC
}

// Config configures the console.
type Config struct {
	// SecureCookies marks the cookies Secure: set when the server is
	// reached over HTTPS (its issuer's scheme), directly or through a
	// proxy.
	SecureCookies bool
	// Origin is the console's origin as browsers see it
	// (https://warden.example.com): a form posted from any other, even a
	// site that shares its host on another port, is refused.
	Origin string
	// SessionTTL bounds a console session (default 8h).
	SessionTTL time.Duration
	Now        func() time.Time
}

// Console serves the pages.
type Console struct {
	cfg   Config
	d     Deps
	log   *slog.Logger
	pages map[string]*template.Template
	mux   *http.ServeMux

	oidc *oidcFlow
	// scans holds a place for each search of the audit log running.
	scans chan struct{}

	mu       sync.Mutex
	sessions map[string]*session
}

type session struct {
	token     string // the credential it was opened with, never sent back
	principal string
	csrf      string
	expires   time.Time
	// flash is the outcome of the last change, shown once.
	flash flash
}

// flash is a message shown once, on the page after a change.
type flash struct {
	Message string
	Failed  bool
}

var _ http.Handler = (*Console)(nil)

// maxSessions bounds the console sessions kept; the oldest go first.
const maxSessions = 1024

// New makes the console.
func New(cfg Config, d Deps) (*Console, error) {
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 8 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Console{cfg: cfg, d: d, log: log, pages: map[string]*template.Template{}, mux: http.NewServeMux(), sessions: map[string]*session{},
		scans: make(chan struct{}, maxScans)}
	funcs := template.FuncMap{"join": strings.Join}
	funcs["percent"] = func(n, of int) int {
		if of == 0 {
			return 0
		}
		return n * 100 / of
	}
	funcs["short"] = short
	funcs["list"] = func(s ...string) []string { return s }
	funcs["when"] = func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	}
	for _, page := range []string{"login", "overview", "agents", "agent", "decisions", "decision", "approvals", "incidents", "policies", "policy", "audit", "confirm"} {
		t, err := template.New(page).Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/"+page+".html")
		if err != nil {
			return nil, err
		}
		c.pages[page] = t
	}
	static, err := fs.Sub(files, "static")
	if err != nil {
		return nil, err
	}
	// The stylesheets, by name: no directory, nothing else embedded.
	c.mux.HandleFunc("GET /ui/static/{file}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("file")
		if !fs.ValidPath(name) || strings.ContainsAny(name, "/\\") || !strings.HasSuffix(name, ".css") {
			http.NotFound(w, r)
			return
		}
		http.ServeFileFS(w, r, static, name)
	})
	c.mux.HandleFunc("GET /ui/login", c.loginPage)
	c.mux.HandleFunc("POST /ui/login", c.login)
	if d.OIDC != nil {
		if c.oidc, err = newOIDCFlow(*d.OIDC); err != nil {
			return nil, err
		}
		c.mux.HandleFunc("GET /ui/oidc/start", c.oidcStart)
		c.mux.HandleFunc("GET /ui/oidc/callback", c.oidcCallback)
		c.mux.HandleFunc("POST /ui/oidc/confirm", c.oidcConfirm)
	}
	c.mux.HandleFunc("POST /ui/logout", c.signedIn("", c.logout))
	c.mux.HandleFunc("GET /ui/{$}", c.signedIn("", c.overview))
	c.mux.HandleFunc("GET /ui/agents", c.signedIn(humans.AgentsRead, c.agents))
	// An agent id holds "//", which a path would lose: it is a parameter.
	c.mux.HandleFunc("GET /ui/agent", c.signedIn(humans.AgentsRead, c.agent))
	c.mux.HandleFunc("POST /ui/agent", c.signedIn(humans.AgentsWrite, c.changeAgent))
	c.mux.HandleFunc("GET /ui/decisions", c.signedIn(humans.AuditRead, c.decisions))
	c.mux.HandleFunc("GET /ui/decisions/{index}", c.signedIn(humans.AuditRead, c.decision))
	c.mux.HandleFunc("GET /ui/approvals", c.signedIn(humans.ApprovalsRead, c.approvals))
	c.mux.HandleFunc("POST /ui/approvals/{id}", c.signedIn(humans.ApprovalsVote, c.vote))
	c.mux.HandleFunc("GET /ui/incidents", c.signedIn(humans.IncidentsRead, c.incidents))
	c.mux.HandleFunc("POST /ui/incidents/{id}", c.signedIn(humans.IncidentsWrite, c.changeIncident))
	c.mux.HandleFunc("GET /ui/policies", c.signedIn(humans.PoliciesRead, c.policies))
	c.mux.HandleFunc("GET /ui/policies/{version}", c.signedIn(humans.PoliciesRead, c.policy))
	c.mux.HandleFunc("POST /ui/policies", c.signedIn(humans.PoliciesActivate, c.changePolicy))
	c.mux.HandleFunc("GET /ui/audit", c.signedIn(humans.AuditRead, c.auditPage))
	c.mux.HandleFunc("GET /ui/audit/export", c.signedIn(humans.AuditExport, c.auditExport))
	return c, nil
}

// ServeHTTP serves /ui/ with the security headers.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for k, v := range securityHeaders {
		w.Header().Set(k, v)
	}
	c.mux.ServeHTTP(w, r)
}

// view is what a page template reads.
type view struct {
	Title     string
	Principal *humans.Principal
	CSRF      string
	// Can says which permissions the signed-in person holds, by name
	// ("agents.read"), for the pages and forms to show.
	Can map[string]bool
	// CanReadAgents and CanReadAudit: the decisions and their reasons come
	// from the audit log, which not every role may read.
	CanReadAgents bool
	CanReadAudit  bool
	Error         string
	Flash         flash
	Overview      overview
	Agents        []agentRow
	More          bool
	Next          string
	Filter        string
	Search        search
	Decisions     []decisionRow
	Decision      *decisionRow
	Page          any

	token string // the session's credential, for API calls; never rendered
	sid   string
}

func (c *Console) render(w http.ResponseWriter, status int, page string, v view) {
	var b strings.Builder
	if err := c.pages[page].ExecuteTemplate(&b, "layout", v); err != nil {
		c.log.Error("console: a page failed to render", "page", page, "err", err)
		httpError(w, "the page could not be made", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(visible(b.String()))
}

// visible shows the characters that change how text around them reads
// without being seen (bidirectional overrides and isolates, zero-width
// characters, other format and control characters, line and paragraph
// separators) as their code, \u202E: what agents put in arguments and
// resource names is shown as it is, not as it would have it read. The
// console's own pages hold none but newlines and tabs.
func visible(page string) []byte {
	out := make([]byte, 0, len(page))
	for _, r := range page {
		switch {
		case r == '\n' || r == '\t':
		case r == utf8.RuneError:
		case unicode.Is(unicode.Cf, r) || unicode.IsControl(r) || r == '\u2028' || r == '\u2029':
			out = fmt.Appendf(out, "\\u%04X", r)
			continue
		}
		out = utf8.AppendRune(out, r)
	}
	return out
}

func (c *Console) cookie(name, value string, maxAge int) *http.Cookie {
	path := "/ui/"
	if c.cfg.SecureCookies {
		path = "/" // as the __Host- prefix requires
	}
	return &http.Cookie{Name: c.name(name), Value: value, Path: path, MaxAge: maxAge, HttpOnly: true, Secure: c.cfg.SecureCookies, SameSite: http.SameSiteStrictMode}
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.loginForm(w, http.StatusOK, "")
}

// loginForm shows the sign-in form with a fresh CSRF token, also set as
// a cookie: the form's post must carry both (the cookie cannot be set by
// another site, and SameSite keeps it from another site's post).
func (c *Console) loginForm(w http.ResponseWriter, status int, msg string) {
	csrf := randomID()
	http.SetCookie(w, c.cookie(loginCookie, csrf, 600))
	c.render(w, status, "login", view{Title: "Sign in", CSRF: csrf, Error: msg, Page: c.oidc != nil})
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		c.loginForm(w, http.StatusBadRequest, "The form could not be read.")
		return
	}
	if !c.sameOrigin(r) {
		c.log.Warn("console: sign-in refused: a form posted from another origin", "origin", r.Header.Get("Origin"), "remote", r.RemoteAddr)
		c.loginForm(w, http.StatusForbidden, "That sign-in came from another site.")
		return
	}
	ck, err := r.Cookie(c.name(loginCookie))
	if err != nil || !same(ck.Value, r.PostForm.Get("csrf")) {
		c.loginForm(w, http.StatusForbidden, "The sign-in form had expired; try again.")
		return
	}
	token := strings.TrimSpace(r.PostForm.Get("token"))
	p, ok := c.d.Authenticate(r.Context(), token)
	if token == "" || !ok {
		c.log.Warn("console: sign-in refused", "remote", r.RemoteAddr)
		c.loginForm(w, http.StatusUnauthorized, "That token is not valid: a wrong, rotated or disabled admin token, or a session that ended.")
		return
	}
	id := c.openSession(token, p.ID)
	c.log.Info("console: signed in", "principal", p.ID)
	http.SetCookie(w, c.cookie(loginCookie, "", -1))
	http.SetCookie(w, c.cookie(sessionCookie, id, int(c.cfg.SessionTTL.Seconds())))
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

// openSession opens a console session for the credential token of
// principal and returns its id, for the cookie.
func (c *Console) openSession(token, principal string) string {
	id := randomID()
	c.mu.Lock()
	c.forgetOld(principal)
	c.sessions[id] = &session{token: token, principal: principal, csrf: randomID(), expires: c.cfg.Now().Add(c.cfg.SessionTTL)}
	c.mu.Unlock()
	return id
}

// maxPerPrincipal bounds one person's console sessions: signing in again
// and again ends their own oldest session, never someone else's.
const maxPerPrincipal = 16

// forgetOld drops expired sessions; past maxPerPrincipal sessions of
// principal, the one of theirs that ends soonest; past maxSessions in all,
// the one that ends soonest. c.mu is held.
func (c *Console) forgetOld(principal string) {
	now := c.cfg.Now()
	mine := 0
	for id, s := range c.sessions {
		if now.After(s.expires) {
			delete(c.sessions, id)
		} else if s.principal == principal {
			mine++
		}
	}
	dropOldest := func(of func(*session) bool) {
		oldest := ""
		for id, s := range c.sessions {
			if of(s) && (oldest == "" || s.expires.Before(c.sessions[oldest].expires)) {
				oldest = id
			}
		}
		delete(c.sessions, oldest)
	}
	for ; mine >= maxPerPrincipal; mine-- {
		dropOldest(func(s *session) bool { return s.principal == principal })
	}
	for len(c.sessions) >= maxSessions {
		dropOldest(func(*session) bool { return true })
	}
}

// signedIn runs h for a live console session whose credential is still
// good and holds perm (none when empty); a post must carry the session's
// CSRF token. Anything else goes to the sign-in page.
func (c *Console) signedIn(perm humans.Permission, h func(http.ResponseWriter, *http.Request, view)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ck, err := r.Cookie(c.name(sessionCookie))
		var s session
		found := false
		if err == nil {
			c.mu.Lock()
			if p, ok := c.sessions[ck.Value]; ok && c.cfg.Now().Before(p.expires) {
				s, found = *p, true
			}
			c.mu.Unlock()
		}
		var p humans.Principal
		if found {
			p, found = c.d.Authenticate(r.Context(), s.token)
		}
		if !found {
			if err == nil {
				c.end(ck.Value)
			}
			http.SetCookie(w, c.cookie(sessionCookie, "", -1))
			http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
			if !c.sameOrigin(r) || r.ParseForm() != nil || !same(s.csrf, r.PostForm.Get("csrf")) {
				httpError(w, "the form's CSRF token is missing or wrong", http.StatusForbidden)
				return
			}
		}
		v := view{Principal: &p, CSRF: s.csrf, Can: map[string]bool{}, token: s.token, sid: ck.Value}
		for _, perm := range humans.AllPermissions {
			v.Can[string(perm)] = c.d.Allows(p.Roles, perm)
		}
		v.CanReadAgents, v.CanReadAudit = v.Can[string(humans.AgentsRead)], v.Can[string(humans.AuditRead)]
		if r.Method == http.MethodGet {
			v.Flash = c.takeFlash(ck.Value)
		}
		if perm != "" && !c.d.Allows(p.Roles, perm) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			httpError(w, p.ID+" lacks the permission "+string(perm), http.StatusForbidden)
			return
		}
		h(w, r, v)
	}
}

func (c *Console) end(id string) {
	c.mu.Lock()
	delete(c.sessions, id)
	c.mu.Unlock()
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, _ view) {
	if ck, err := r.Cookie(c.name(sessionCookie)); err == nil {
		c.end(ck.Value)
	}
	http.SetCookie(w, c.cookie(sessionCookie, "", -1))
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

// overview is the figures of the overview page.
type overview struct {
	Window, Decisions, Denied int
	TopReasons                []reasonCount
	Agents                    int
	ByStatus                  map[string]int
	Entries                   int64
	Checkpoint                bool
	CheckpointSize            int64
	CheckpointAge             time.Duration
	Policy                    string
	Rate                      chart
	Graph                     graph
	// Risky are the agents of highest risk.
	Risky []agentRow
	// Pending and Open count live approval requests and open incidents,
	// -1 when the person may not read them or they cannot be read.
	Pending, Open int
}

type reasonCount struct {
	Reason string
	Count  int
}

// overviewWindow is how many of the newest audit entries the overview
// reads, and windowBytes how many bytes of them at most (agents choose
// how large their entries are).
const (
	overviewWindow = 1000
	windowBytes    = 8 << 20
)

// newest reads up to n of the newest entries of a log of size entries,
// and up to maxBytes of them, oldest first.
func (c *Console) newest(ctx context.Context, size int64, n int, maxBytes int) ([][]byte, error) {
	var chunks [][][]byte
	got, bytes := 0, 0
	for top := size; top > 0 && got < n && bytes < maxBytes; {
		from := max(0, top-128, top-int64(n-got))
		raw, err := c.d.Audit.Read(ctx, from, top)
		if err != nil {
			return nil, err
		}
		keep := len(raw)
		for i := len(raw) - 1; i >= 0; i-- {
			if bytes >= maxBytes {
				break
			}
			bytes += len(raw[i])
			keep = i
		}
		raw = raw[keep:]
		chunks = append(chunks, raw)
		got += len(raw)
		top = from
	}
	out := make([][]byte, 0, got)
	for _, ch := range slices.Backward(chunks) {
		out = append(out, ch...)
	}
	return out, nil
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request, v view) {
	ctx := r.Context()
	o := overview{ByStatus: map[string]int{}, Pending: -1, Open: -1}
	if n, err := c.d.Audit.Size(ctx); err == nil {
		o.Entries = n
		var window []*audit.Entry
		if raw, err := c.newest(ctx, n, overviewWindow, windowBytes); err == nil && v.CanReadAudit {
			o.Window = len(raw)
			reasons := map[string]int{}
			for _, b := range raw {
				e, err := audit.PeekEntry(b)
				if err != nil || e.Kind != audit.KindDecision {
					continue
				}
				o.Decisions++
				window = append(window, e)
				if e.Outcome == string(policy.Deny) {
					o.Denied++
					for _, rs := range e.Reasons {
						reasons[rs]++
					}
				}
			}
			for rs, n := range reasons {
				o.TopReasons = append(o.TopReasons, reasonCount{rs, n})
			}
			slices.SortFunc(o.TopReasons, func(a, b reasonCount) int { return cmp.Or(b.Count-a.Count, strings.Compare(a.Reason, b.Reason)) })
			o.TopReasons = o.TopReasons[:min(len(o.TopReasons), 10)]
			o.Graph = callGraph(window)
			if bs, err := c.rates(ctx, c.cfg.Now()); err == nil {
				o.Rate = rateChart(bs)
			} else {
				o.Rate = chart{Empty: true}
			}
		}
	}
	if cp, err := c.d.Audit.Checkpoint(ctx); err == nil {
		o.Checkpoint, o.CheckpointSize, o.CheckpointAge = true, cp.Size, c.cfg.Now().Sub(cp.Time).Round(time.Second)
	}
	if v.CanReadAgents {
		if as, err := c.d.Agents(ctx, store.AgentFilter{Limit: 1000}); err == nil {
			o.Agents = len(as)
			for _, a := range as {
				o.ByStatus[string(a.Status)]++
				if v.Can["monitor.read"] && c.d.Risk != nil {
					if rk, ok := c.d.Risk(a.ID); ok && rk.Score > 0 {
						o.Risky = append(o.Risky, agentRow{Agent: a, Risk: rk, HasRisk: true})
					}
				}
			}
			slices.SortStableFunc(o.Risky, func(a, b agentRow) int { return cmp.Compare(b.Risk.Score, a.Risk.Score) })
			o.Risky = o.Risky[:min(len(o.Risky), 10)]
		}
	}
	if v.Can["approvals.read"] {
		var out struct{ Approvals []json.RawMessage }
		if c.get(r, v, "/v1/approvals?status=pending&live=true&limit=1000", &out) == nil {
			o.Pending = len(out.Approvals)
		}
	}
	if v.Can["incidents.read"] {
		var out struct{ Incidents []json.RawMessage }
		if c.get(r, v, "/v1/incidents?open=true&limit=1000", &out) == nil {
			o.Open = len(out.Incidents)
		}
	}
	if live := c.d.Policies.Live(); live.Active != nil && v.Can["policies.read"] {
		o.Policy = live.Active.Version()
	}
	v.Title, v.Overview = "Overview", o
	c.render(w, http.StatusOK, "overview", v)
}

func randomID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func same(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
