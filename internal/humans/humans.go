// Package humans signs people in: Warden is an OpenID Connect relying
// party. A person signs in at the provider (the CLI uses the device grant or
// a browser with PKCE), hands Warden the ID token, and gets a short-lived
// Warden session whose roles come from the provider's groups. Every
// administrative act is then recorded under the person's own name,
// human:<issuer>#<subject>.
package humans

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/warden-run/warden/internal/store"
)

// Config is the humans section of warden.yaml.
type Config struct {
	// Issuer is the OpenID provider's issuer URL; empty: no sign-in.
	Issuer string `yaml:"issuer"`
	// ClientID is Warden's client at the provider: a public client that
	// allows the device grant and authorization code with PKCE, with
	// loopback redirect URIs.
	ClientID string `yaml:"client_id"`
	// Scopes asked for at sign-in. Default: openid email profile groups.
	Scopes []string `yaml:"scopes"`
	// GroupsClaim is the ID token claim that lists the person's groups.
	// Default: groups.
	GroupsClaim string `yaml:"groups_claim"`
	// Groups gives the members of a provider group Warden roles; Emails
	// does the same for a verified email (providers without groups).
	Groups map[string][]string `yaml:"groups"`
	Emails map[string][]string `yaml:"emails"`
	// Roles defines roles of the deployment's own: name → permissions.
	Roles map[string][]string `yaml:"roles"`
	// SessionTTL is how long a Warden session lasts. Default 8h, at most 24h.
	SessionTTL time.Duration `yaml:"session_ttl"`
	// TwoPersonActivation: a policy version is activated by someone other
	// than who pushed it.
	TwoPersonActivation bool `yaml:"two_person_activation"`
}

// Defaults and bounds.
const (
	DefaultSessionTTL = 8 * time.Hour
	MaxSessionTTL     = 24 * time.Hour
	sessionPrefix     = "wdn_session_"
	// clockSkew is how far the provider's clock may be ahead of Warden's.
	clockSkew = time.Minute
)

// Enabled reports whether sign-in is configured.
func (c Config) Enabled() bool { return c.Issuer != "" }

// Check fills defaults and says what is wrong.
func (c *Config) Check() error {
	if !c.Enabled() {
		if c.ClientID != "" || len(c.Groups) > 0 || len(c.Emails) > 0 {
			return errors.New("humans: issuer is required when client_id, groups or emails are set")
		}
		return nil
	}
	u, err := url.Parse(c.Issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("humans.issuer %q: want the provider's https:// issuer URL", c.Issuer)
	}
	if c.ClientID == "" {
		return errors.New("humans.client_id is required: Warden's client at the provider")
	}
	if len(c.Scopes) == 0 {
		c.Scopes = []string{oidc.ScopeOpenID, "email", "profile", "groups"}
	}
	if !slices.Contains(c.Scopes, oidc.ScopeOpenID) {
		return errors.New("humans.scopes must include openid")
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = "groups"
	}
	switch {
	case c.SessionTTL == 0:
		c.SessionTTL = DefaultSessionTTL
	case c.SessionTTL < time.Minute || c.SessionTTL > MaxSessionTTL:
		return fmt.Errorf("humans.session_ttl %s: want 1m to 24h", c.SessionTTL)
	}
	roles, err := NewRoles(c.Roles)
	if err != nil {
		return err
	}
	for kind, m := range map[string]map[string][]string{"groups": c.Groups, "emails": c.Emails} {
		for k, rs := range m {
			for _, r := range rs {
				if !roles.Known(r) {
					return fmt.Errorf("humans.%s[%q]: unknown role %q (define it under humans.roles)", kind, k, r)
				}
			}
		}
	}
	if len(c.Groups) == 0 && len(c.Emails) == 0 {
		return errors.New("humans: groups or emails must give someone a role, or nobody can sign in")
	}
	return nil
}

// Principal is who an admin request is from: a signed-in person, or the
// bootstrap token.
type Principal struct {
	ID    string   `json:"id"`
	Email string   `json:"email,omitempty"`
	Name  string   `json:"name,omitempty"`
	Roles []string `json:"roles"`
	Human bool     `json:"human"`
	// ExpiresAt is when a person's session ends.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// Errors of sign-in and sessions.
var (
	ErrDisabled   = errors.New("sign-in is not configured (humans.issuer)")
	ErrIDToken    = errors.New("the ID token is not valid")
	ErrNoRole     = errors.New("no Warden role")
	ErrNoSession  = errors.New("no such session")
	ErrSessionEnd = errors.New("the session has ended")
)

// Store is what the service keeps: people and sessions, and the ID tokens
// used (each signs in once).
type Store interface {
	store.HumanStore
	store.ReplayStore
}

// Service signs people in and answers their sessions.
type Service struct {
	cfg   Config
	roles Roles
	st    store.HumanStore
	used  store.ReplayStore
	lg    *slog.Logger
	now   func() time.Time

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier // made at the first sign-in: the provider may be down at start
}

// New makes a service; cfg must have passed Check.
func New(cfg Config, st Store, lg *slog.Logger, now func() time.Time) (*Service, error) {
	roles, err := NewRoles(cfg.Roles)
	if err != nil {
		return nil, err
	}
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Service{cfg: cfg, roles: roles, st: st, used: st, lg: lg, now: now}, nil
}

// Config is the service's configuration.
func (s *Service) Config() Config { return s.cfg }

// Roles is the roles in force.
func (s *Service) Roles() Roles { return s.roles }

func (s *Service) idTokenVerifier(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.verifier != nil {
		return s.verifier, nil
	}
	if !s.cfg.Enabled() {
		return nil, ErrDisabled
	}
	p, err := oidc.NewProvider(ctx, s.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("the OpenID provider %s: %w", s.cfg.Issuer, err)
	}
	s.verifier = p.Verifier(&oidc.Config{ClientID: s.cfg.ClientID, Now: s.now})
	return s.verifier, nil
}

// idClaims are the ID token claims Warden reads.
type idClaims struct {
	AuthorizedParty string `json:"azp"`
	Email           string `json:"email"`
	EmailVerified   *bool  `json:"email_verified"`
	Name            string `json:"name"`
	Nonce           string `json:"nonce"`
}

// Login verifies an ID token from the provider (signature by a key of its
// JWKS, issuer, audience Warden's client, not expired, the nonce when one
// was asked for) and opens a session for the person with the roles their
// groups (or verified email) give. It returns the session token, once.
func (s *Service) Login(ctx context.Context, rawIDToken, nonce string) (Principal, string, error) {
	v, err := s.idTokenVerifier(ctx)
	if err != nil {
		return Principal{}, "", err
	}
	tok, err := v.Verify(ctx, rawIDToken)
	if err != nil {
		return Principal{}, "", fmt.Errorf("%w: %v", ErrIDToken, err)
	}
	var c idClaims
	if err := tok.Claims(&c); err != nil {
		return Principal{}, "", fmt.Errorf("%w: %v", ErrIDToken, err)
	}
	now := s.now()
	switch {
	case c.Nonce != nonce:
		// A token from a browser sign-in carries the nonce that sign-in
		// made up; only that sign-in knows it. One without is a device's.
		return Principal{}, "", fmt.Errorf("%w: the nonce does not match the sign-in's", ErrIDToken)
	case len(tok.Audience) > 1 && c.AuthorizedParty != s.cfg.ClientID:
		// OIDC Core 3.1.3.7: with several audiences, azp names the client
		// the token was issued to.
		return Principal{}, "", fmt.Errorf("%w: issued to %q (azp), not to this client", ErrIDToken, c.AuthorizedParty)
	case tok.IssuedAt.After(now.Add(clockSkew)):
		return Principal{}, "", fmt.Errorf("%w: issued in the future", ErrIDToken)
	}
	// Once: a token seen in a log or a proxy cannot open a second session.
	sum := sha256.Sum256([]byte(rawIDToken))
	if err := s.used.MarkUsed(ctx, "id_token", hex.EncodeToString(sum[:]), tok.Expiry.Add(clockSkew)); err != nil {
		if errors.Is(err, store.ErrReplay) {
			return Principal{}, "", fmt.Errorf("%w: it was used to sign in already", ErrIDToken)
		}
		return Principal{}, "", err
	}
	var all map[string]json.RawMessage
	tok.Claims(&all)
	roles := s.rolesOf(all[s.cfg.GroupsClaim], c)
	id := "human:" + tok.Issuer + "#" + tok.Subject
	if len(roles) == 0 {
		return Principal{}, "", fmt.Errorf("%w: %s (%s) is in no group that humans.groups maps to a role", ErrNoRole, id, c.Email)
	}
	now = store.Time(now)
	raw := make([]byte, 32)
	rand.Read(raw)
	secret := sessionPrefix + base64.RawURLEncoding.EncodeToString(raw)
	h := store.Human{ID: id, Issuer: tok.Issuer, Subject: tok.Subject, Email: c.Email, Name: c.Name, Roles: roles, FirstSeen: now, LastLogin: now}
	sess := store.HumanSession{Digest: digest(secret), HumanID: id, Roles: roles, CreatedAt: now, ExpiresAt: now.Add(s.cfg.SessionTTL)}
	detail, _ := json.Marshal(map[string]any{"email": c.Email, "roles": roles, "expires_at": sess.ExpiresAt})
	if err := s.st.SignIn(ctx, h, sess, store.Event{Time: now, Actor: id, Action: "human.login", Target: id, Detail: detail}); err != nil {
		return Principal{}, "", err
	}
	return Principal{ID: id, Email: c.Email, Name: c.Name, Roles: roles, Human: true, ExpiresAt: sess.ExpiresAt}, secret, nil
}

// rolesOf maps the person's groups and verified email to Warden roles.
func (s *Service) rolesOf(groupsClaim json.RawMessage, c idClaims) []string {
	var groups []string
	if len(groupsClaim) > 0 {
		if json.Unmarshal(groupsClaim, &groups) != nil {
			var one string
			if json.Unmarshal(groupsClaim, &one) == nil {
				groups = []string{one}
			}
		}
	}
	set := map[string]bool{}
	for _, g := range groups {
		for _, r := range s.cfg.Groups[g] {
			set[r] = true
		}
	}
	// An email counts only when the provider says it verified it.
	if c.Email != "" && c.EmailVerified != nil && *c.EmailVerified {
		for _, r := range s.cfg.Emails[strings.ToLower(c.Email)] {
			set[r] = true
		}
	}
	out := make([]string, 0, len(set))
	for r := range set {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// IsSession reports whether a bearer credential has the form of a session
// token (the admin and enforcement point credentials do not).
func IsSession(bearer string) bool { return strings.HasPrefix(bearer, sessionPrefix) }

// Authenticate answers the person a session token belongs to.
func (s *Service) Authenticate(ctx context.Context, secret string) (Principal, error) {
	sess, h, err := s.st.HumanSession(ctx, digest(secret))
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, ErrNoSession
	}
	if err != nil {
		return Principal{}, err
	}
	if !sess.RevokedAt.IsZero() || !s.now().Before(sess.ExpiresAt) {
		return Principal{}, ErrSessionEnd
	}
	return Principal{ID: h.ID, Email: h.Email, Name: h.Name, Roles: sess.Roles, Human: true, ExpiresAt: sess.ExpiresAt}, nil
}

// Logout ends a session.
func (s *Service) Logout(ctx context.Context, secret string, p Principal) error {
	now := store.Time(s.now())
	err := s.st.RevokeHumanSession(ctx, digest(secret), now, store.Event{Time: now, Actor: p.ID, Action: "human.logout", Target: p.ID})
	if errors.Is(err, store.ErrNotFound) {
		return ErrNoSession
	}
	return err
}

// People lists everyone who has signed in.
func (s *Service) People(ctx context.Context) ([]store.Human, error) { return s.st.Humans(ctx) }

// Email is the email of a person by id ("" when unknown), for the audit
// log's entries of what they did.
func (s *Service) Email(ctx context.Context, id string) string {
	h, err := s.st.Human(ctx, id)
	if err != nil {
		return ""
	}
	return h.Email
}

func digest(secret string) string {
	d := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(d[:])
}
