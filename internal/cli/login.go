package cli

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/spf13/cobra"
	"golang.org/x/oauth2"

	"github.com/warden-run/warden/internal/humans"
	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/server"
)

// A person's sessions, one per server, in a file only they can read.
type savedSession struct {
	Token     string    `json:"token"`
	Principal string    `json:"principal"`
	ExpiresAt time.Time `json:"expires_at"`
}

func defaultSessionFile() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "warden", "sessions.json")
}

func (g *globals) sessions() map[string]savedSession {
	out := map[string]savedSession{}
	if g.sessionFile == "" {
		return out
	}
	st, err := os.Stat(g.sessionFile)
	if err != nil || st.Mode().Perm()&0o077 != 0 {
		return out // a file others can read is not used
	}
	b, err := os.ReadFile(g.sessionFile)
	if err == nil {
		json.Unmarshal(b, &out)
	}
	return out
}

func (g *globals) serverKey() string { return strings.TrimSuffix(g.server, "/") }

// session is the signed-in person's session token for --server, if any.
func (g *globals) session() string {
	s, ok := g.sessions()[g.serverKey()]
	if !ok || !time.Now().Before(s.ExpiresAt) {
		return ""
	}
	return s.Token
}

func (g *globals) saveSession(s *savedSession) error {
	if g.sessionFile == "" {
		return errors.New("no place for sessions: give --session-file")
	}
	all := g.sessions()
	if s == nil {
		delete(all, g.serverKey())
	} else {
		all[g.serverKey()] = *s
	}
	b, _ := json.MarshalIndent(all, "", "  ")
	if err := os.MkdirAll(filepath.Dir(g.sessionFile), 0o700); err != nil {
		return err
	}
	tmp := g.sessionFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	os.Chmod(tmp, 0o600)
	return os.Rename(tmp, g.sessionFile)
}

func newLoginCmd(g *globals) *cobra.Command {
	var browser bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Sign in through the OpenID provider; admin commands then act as you",
		Long: `Sign in at the OpenID provider the server is configured with (humans in
warden.yaml). By default with a code to enter on any device (RFC 8628);
with --browser, in a browser on this machine (authorization code with PKCE,
the answer comes back to a port on 127.0.0.1). The provider's ID token is
exchanged for a Warden session (8 hours by default) whose roles come from
your groups; it is kept in --session-file, readable by you alone, and every
admin command to this server then acts as you.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			base := g.serverKey()
			if err := checkTransport(base); err != nil {
				return err
			}
			h := newHTTP(answerTimeout)
			var ac server.AuthConfig
			if err := getJSON(ctx, h, base+"/v1/auth/config", &ac); err != nil {
				return err
			}
			p, err := oidc.NewProvider(oidc.ClientContext(ctx, h), ac.Issuer)
			if err != nil {
				return fmt.Errorf("the OpenID provider %s: %w", ac.Issuer, err)
			}
			ep := p.Endpoint()
			ep.AuthStyle = oauth2.AuthStyleInParams // a public client: no secret to send
			oc := &oauth2.Config{ClientID: ac.ClientID, Endpoint: ep, Scopes: ac.Scopes}
			var idToken, nonce string
			if browser {
				idToken, nonce, err = browserSignIn(ctx, g, oc)
			} else {
				idToken, err = deviceSignIn(ctx, g, oc)
			}
			if err != nil {
				return err
			}
			var lr server.LoginResponse
			if err := postJSON(ctx, h, base+"/v1/auth/login", server.LoginRequest{IDToken: idToken, Nonce: nonce}, &lr); err != nil {
				return err
			}
			if err := g.saveSession(&savedSession{Token: lr.SessionToken, Principal: lr.Principal.ID, ExpiresAt: lr.Principal.ExpiresAt}); err != nil {
				return fmt.Errorf("signed in, but the session could not be kept: %w", err)
			}
			if g.format == "json" {
				return g.printJSON(lr.Principal)
			}
			fmt.Fprintf(g.out, "signed in as %s (%s)\nroles: %s\nuntil %s\n", lr.Principal.ID, lr.Principal.Email,
				strings.Join(lr.Principal.Roles, ", "), lr.Principal.ExpiresAt.Local().Format(time.RFC1123))
			return nil
		},
	}
	cmd.Flags().BoolVar(&browser, "browser", false, "sign in with a browser on this machine (authorization code with PKCE) instead of a device code")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the sign-in")
	return cmd
}

// deviceSignIn asks the provider for a device code, shows it, and waits
// for the person to approve it elsewhere.
func deviceSignIn(ctx context.Context, g *globals, oc *oauth2.Config) (string, error) {
	da, err := oc.DeviceAuth(ctx)
	if err != nil {
		return "", fmt.Errorf("device authorization at the provider: %w", err)
	}
	fmt.Fprintf(g.errOut, "To sign in, open %s and enter the code %s\n", da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(g.errOut, "(or open %s)\n", da.VerificationURIComplete)
	}
	fmt.Fprintln(g.errOut, "Waiting for you to approve...")
	tok, err := oc.DeviceAccessToken(ctx, da)
	if err != nil {
		return "", fmt.Errorf("the sign-in was not completed: %w", err)
	}
	return idTokenOf(tok)
}

// browserSignIn runs the authorization code flow with PKCE (S256), state
// and nonce, the answer coming to a one-time listener on 127.0.0.1.
func browserSignIn(ctx context.Context, g *globals, oc *oauth2.Config) (string, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", err
	}
	defer ln.Close()
	oc.RedirectURL = "http://" + ln.Addr().String() + "/callback"
	state, nonce, verifier := randomString(), randomString(), oauth2.GenerateVerifier()
	type answer struct {
		code string
		err  error
	}
	got := make(chan answer, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		var a answer
		switch {
		case q.Get("state") != state:
			a.err = errors.New("the provider's answer has another state: not the sign-in this command started")
		case q.Get("error") != "":
			a.err = fmt.Errorf("the provider refused: %s %s", q.Get("error"), q.Get("error_description"))
		case q.Get("code") == "":
			a.err = errors.New("the provider's answer has no code")
		default:
			a.code = q.Get("code")
		}
		if a.err != nil {
			http.Error(w, "Sign-in failed: "+a.err.Error(), http.StatusBadRequest)
		} else {
			fmt.Fprintln(w, "Signed in. You can close this window and return to the terminal.")
		}
		select {
		case got <- a:
		default:
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	authURL := oc.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce))
	fmt.Fprintf(g.errOut, "To sign in, open this address in a browser on this machine:\n%s\n", authURL)
	var a answer
	select {
	case <-ctx.Done():
		return "", "", errors.New("the sign-in was not completed in time")
	case a = <-got:
	}
	if a.err != nil {
		return "", "", a.err
	}
	tok, err := oc.Exchange(ctx, a.code, oauth2.VerifierOption(verifier))
	if err != nil {
		return "", "", fmt.Errorf("exchanging the code at the provider: %w", err)
	}
	id, err := idTokenOf(tok)
	return id, nonce, err
}

func idTokenOf(tok *oauth2.Token) (string, error) {
	id, _ := tok.Extra("id_token").(string)
	if id == "" {
		return "", errors.New("the provider answered without an ID token (is the openid scope allowed for the client?)")
	}
	return id, nil
}

func randomString() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// checkTransport refuses plain HTTP off this machine: a session token
// would cross the network in the clear.
func checkTransport(base string) error {
	u, err := url.Parse(base)
	if err != nil {
		return fmt.Errorf("--server: %w", err)
	}
	if ip := net.ParseIP(u.Hostname()); u.Scheme == "http" && u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--server %s: plain HTTP off this machine would carry your session in the clear; use the server's https:// URL", base)
	}
	return nil
}

func getJSON(ctx context.Context, h *http.Client, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	return sendJSON(h, req, out)
}

func postJSON(ctx context.Context, h *http.Client, u string, body, out any) error {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(string(b)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return sendJSON(h, req, out)
}

func sendJSON(h *http.Client, req *http.Request, out any) error {
	resp, err := h.Do(req)
	if err != nil {
		return &unreachableError{server: req.URL.Scheme + "://" + req.URL.Host, err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		e := &apiError{Status: resp.StatusCode}
		if json.NewDecoder(resp.Body).Decode(e) != nil || e.Code == "" {
			return fmt.Errorf("HTTP %d from %s", resp.StatusCode, req.URL.Path)
		}
		return e
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func newLogoutCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "End your session at --server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			tok := g.session()
			if tok == "" {
				g.saveSession(nil)
				fmt.Fprintln(g.out, "not signed in")
				return nil
			}
			c := &adminClient{base: g.serverKey(), token: tok, http: newHTTP(answerTimeout)}
			err := c.do(cmd.Context(), "POST", "/v1/auth/logout", nil, nil)
			var ae *apiError
			if err != nil && !(errors.As(err, &ae) && ae.Status == http.StatusUnauthorized) {
				return err
			}
			if err := g.saveSession(nil); err != nil {
				return err
			}
			fmt.Fprintln(g.out, "signed out")
			return nil
		},
	}
}

func newWhoamiCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show who admin commands act as, and with which roles",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.admin()
			if err != nil {
				return err
			}
			var p humans.Principal
			if err := c.do(cmd.Context(), "GET", "/v1/auth/whoami", nil, &p); err != nil {
				return err
			}
			if g.format == "json" {
				return g.printJSON(p)
			}
			fmt.Fprintf(g.out, "%s", p.ID)
			if p.Email != "" {
				fmt.Fprintf(g.out, " (%s)", p.Email)
			}
			fmt.Fprintf(g.out, "\nroles: %s\n", strings.Join(p.Roles, ", "))
			if !p.ExpiresAt.IsZero() {
				fmt.Fprintf(g.out, "session until %s\n", p.ExpiresAt.Local().Format(time.RFC1123))
			}
			return nil
		},
	}
}

func newAccessCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "access",
		Short: "Who may administer: people who signed in, roles, the bootstrap token",
	}
	show := &cobra.Command{
		Use:   "show",
		Short: "List the people who signed in, the roles, and whether the bootstrap token works",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.admin()
			if err != nil {
				return err
			}
			var out struct {
				Bootstrap *bool                          `json:"bootstrap_enabled"`
				Humans    []map[string]any               `json:"humans"`
				Roles     map[string][]humans.Permission `json:"roles"`
			}
			if err := c.do(cmd.Context(), "GET", "/v1/access", nil, &out); err != nil {
				return err
			}
			if g.format == "json" {
				return g.printJSON(out)
			}
			if out.Bootstrap != nil {
				state := "enabled"
				if !*out.Bootstrap {
					state = "disabled"
				}
				fmt.Fprintf(g.out, "bootstrap token: %s\n\n", state)
			}
			var rows [][]string
			for _, h := range out.Humans {
				roles, _ := json.Marshal(h["roles"])
				rows = append(rows, []string{fmt.Sprint(h["id"]), fmt.Sprint(h["email"]), strings.Trim(string(roles), "[]"), fmt.Sprint(h["last_login"])})
			}
			if len(rows) == 0 {
				fmt.Fprintln(g.out, "nobody has signed in")
				return nil
			}
			return g.table([]string{"PERSON", "EMAIL", "ROLES", "LAST SIGN-IN"}, rows)
		},
	}
	var out string
	rotate := &cobra.Command{
		Use:   "rotate-bootstrap --out FILE",
		Short: "Replace the bootstrap admin token; the new one is written to FILE (mode 0600)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("--out is required: the new token is written there, never printed")
			}
			c, err := g.admin()
			if err != nil {
				return err
			}
			var res struct {
				Token string `json:"token"`
			}
			if err := c.do(cmd.Context(), "POST", "/v1/access/bootstrap/rotate", nil, &res); err != nil {
				return err
			}
			os.Remove(out)
			if err := identity.WriteFileExclusive(out, []byte(res.Token+"\n"), 0o600); err != nil {
				return fmt.Errorf("the token was rotated but could not be written to %s: %w (rotate again)", out, err)
			}
			fmt.Fprintf(g.out, "bootstrap token rotated; the new one is in %s (the old one no longer works)\n", out)
			return nil
		},
	}
	rotate.Flags().StringVar(&out, "out", "", "file to write the new token to (required)")
	disable := &cobra.Command{
		Use:   "disable-bootstrap",
		Short: "Refuse the bootstrap admin token from now on (a person with the admin role must have signed in)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.admin()
			if err != nil {
				return err
			}
			if err := c.do(cmd.Context(), "POST", "/v1/access/bootstrap/disable", nil, nil); err != nil {
				return err
			}
			fmt.Fprintln(g.out, "the bootstrap token is disabled; 'warden access rotate-bootstrap' makes a new one")
			return nil
		},
	}
	cmd.AddCommand(show, rotate, disable)
	return cmd
}
