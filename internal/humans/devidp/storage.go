package devidp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/url"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// storage is the in-memory op.Storage behind a Provider. The op package speaks
// the protocol (parsing, validation, PKCE, signing, error responses); storage
// only remembers clients, users, pending requests and issued tokens.
// mu guards the maps below it; key, clients and users never change after Start.
type storage struct {
	key     signingKey
	clients map[string]*client
	users   []User

	mu        sync.Mutex
	authReqs  map[string]*authRequest                 // by ID
	codes     map[string]string                       // authorization code -> auth request ID
	access    map[string]*grant                       // access token ID -> grant
	refresh   map[string]*grant                       // refresh token -> grant
	devices   map[string]*op.DeviceAuthorizationState // device code -> state
	userCodes map[string]string                       // user code -> device code
	consents  map[string]deviceConsent                // device consent ticket (a cookie) -> who and what
}

// deviceConsent is what the device verification page knows between the
// person signing in and the person answering allow/deny.
type deviceConsent struct{ userCode, userID string }

const (
	accessTokenLifetime  = 15 * time.Minute
	refreshTokenLifetime = 5 * time.Hour
)

// scopesSupported is what discovery advertises and what the clients may ask for.
var scopesSupported = []string{oidc.ScopeOpenID, oidc.ScopeEmail, oidc.ScopeProfile, "groups", oidc.ScopeOfflineAccess}

func newStorage(users []User) (*storage, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return &storage{
		key:       signingKey{id: rand.Text(), private: key},
		clients:   map[string]*client{ClientID: {id: ClientID}, OtherClientID: {id: OtherClientID}},
		users:     users,
		authReqs:  map[string]*authRequest{},
		codes:     map[string]string{},
		access:    map[string]*grant{},
		refresh:   map[string]*grant{},
		devices:   map[string]*op.DeviceAuthorizationState{},
		userCodes: map[string]string{},
		consents:  map[string]deviceConsent{},
	}, nil
}

var (
	_ op.Storage                    = (*storage)(nil)
	_ op.CanSetUserinfoFromRequest  = (*storage)(nil)
	_ op.DeviceAuthorizationStorage = (*storage)(nil)
)

// --- users, and what the sign-in and device pages (pages.go) do ---

func (s *storage) user(id string) (User, bool) {
	i := slices.IndexFunc(s.users, func(u User) bool { return u.ID == id })
	if i < 0 {
		return User{}, false
	}
	return s.users[i], true
}

var errBadCredentials = errors.New("username or password wrong")

func (s *storage) checkPassword(username, password string) (User, error) {
	i := slices.IndexFunc(s.users, func(u User) bool { return u.Username == username })
	if i < 0 || s.users[i].Password != password {
		return User{}, errBadCredentials
	}
	return s.users[i], nil
}

// login marks the auth request done for the user, so that op's callback
// endpoint issues the authorization code.
func (s *storage) login(authReqID, username, password string) error {
	u, err := s.checkPassword(username, password)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.authReqs[authReqID]
	if !ok {
		return errors.New("unknown or finished authorization request")
	}
	r.userID, r.authTime, r.done = u.ID, time.Now(), true
	return nil
}

// pendingDevice is the device authorization a user code names, if it still waits for an answer.
func (s *storage) pendingDevice(userCode string) (op.DeviceAuthorizationState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	state, err := s.pendingDeviceLocked(userCode)
	if err != nil {
		return op.DeviceAuthorizationState{}, err
	}
	return *state, nil
}

func (s *storage) pendingDeviceLocked(userCode string) (*op.DeviceAuthorizationState, error) {
	state, ok := s.devices[s.userCodes[userCode]]
	switch {
	case !ok:
		return nil, errors.New("unknown user code")
	case state.Done || state.Denied:
		return nil, errors.New("user code already used")
	case time.Now().After(state.Expires):
		return nil, errors.New("user code expired")
	}
	return state, nil
}

// newConsent remembers who signed in at the verification page for which code,
// under a random ticket the browser keeps in a cookie until it answers.
func (s *storage) newConsent(userCode, userID string) string {
	ticket := rand.Text()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.consents[ticket] = deviceConsent{userCode: userCode, userID: userID}
	return ticket
}

// takeConsent redeems a ticket: one answer per sign-in.
func (s *storage) takeConsent(ticket string) (deviceConsent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.consents[ticket]
	if !ok {
		return c, errors.New("unknown consent ticket")
	}
	delete(s.consents, ticket)
	return c, nil
}

// decideDevice records the person's answer for a pending device authorization;
// op's token endpoint then answers the polling device accordingly.
func (s *storage) decideDevice(userCode, userID string, allow bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	state, err := s.pendingDeviceLocked(userCode)
	if err != nil {
		return err
	}
	if !allow {
		state.Denied = true
		return nil
	}
	state.Subject, state.AMR, state.AuthTime, state.Done = userID, []string{"pwd"}, time.Now(), true
	return nil
}

// --- op.AuthStorage: authorization requests and codes ---

func (s *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, userID string) (op.AuthRequest, error) {
	// op itself accepts "plain" and, for a public client, notices a missing
	// challenge only at the token endpoint; refuse both here, at the authorize
	// endpoint, as RFC 9700 (2.1.1) recommends for public clients.
	if req.CodeChallenge == "" || req.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE with code_challenge_method S256 is required")
	}
	if slices.Equal(req.Prompt, []string{oidc.PromptNone}) {
		return nil, oidc.ErrLoginRequired() // there are no sessions to reuse
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &authRequest{id: rand.Text(), req: *req, userID: userID}
	s.authReqs[r.id] = r
	return r.copy(), nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.authReqs[id]
	if !ok {
		return nil, errors.New("auth request not found")
	}
	return r.copy(), nil
}

func (s *storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	id, ok := s.codes[code]
	s.mu.Unlock()
	if !ok {
		return nil, errors.New("code invalid or already used")
	}
	return s.AuthRequestByID(ctx, id)
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

// DeleteAuthRequest is called once the code was exchanged: the code is single use.
func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.authReqs, id)
	for code, reqID := range s.codes {
		if reqID == id {
			delete(s.codes, code)
		}
	}
	return nil
}

// --- op.AuthStorage: tokens ---

// newGrant describes what a token request was for; request is one of
// *authRequest, *op.DeviceAuthorizationState or *grant (a refresh).
func newGrant(request op.TokenRequest, lifetime time.Duration) *grant {
	g := &grant{
		subject:  request.GetSubject(),
		audience: slices.Clone(request.GetAudience()),
		scopes:   slices.Clone(request.GetScopes()),
		expires:  time.Now().Add(lifetime),
	}
	if r, ok := request.(op.IDTokenRequest); ok {
		g.clientID, g.amr, g.authTime = r.GetClientID(), slices.Clone(r.GetAMR()), r.GetAuthTime()
	}
	return g
}

func (s *storage) CreateAccessToken(_ context.Context, request op.TokenRequest) (string, time.Time, error) {
	g := newGrant(request, accessTokenLifetime)
	id := rand.Text()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.access[id] = g
	return id, g.expires, nil
}

// CreateAccessAndRefreshTokens issues both; on a refresh it rotates the refresh
// token, so the old one (and its access token) stops working.
func (s *storage) CreateAccessAndRefreshTokens(ctx context.Context, request op.TokenRequest, currentRefreshToken string) (string, string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if currentRefreshToken != "" {
		old, ok := s.refresh[currentRefreshToken]
		if !ok || time.Now().After(old.expires) {
			return "", "", time.Time{}, op.ErrInvalidRefreshToken
		}
		delete(s.refresh, currentRefreshToken)
		delete(s.access, old.accessTokenID)
	}
	accessID, refreshToken := rand.Text(), rand.Text()
	g := newGrant(request, accessTokenLifetime)
	s.access[accessID] = g
	r := newGrant(request, refreshTokenLifetime)
	r.accessTokenID = accessID
	s.refresh[refreshToken] = r
	return accessID, refreshToken, g.expires, nil
}

func (s *storage) TokenRequestByRefreshToken(_ context.Context, refreshToken string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.refresh[refreshToken]
	if !ok || time.Now().After(g.expires) {
		return nil, op.ErrInvalidRefreshToken
	}
	c := *g
	return &c, nil
}

func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range []map[string]*grant{s.access, s.refresh} {
		for k, g := range m {
			if g.subject == userID && g.clientID == clientID {
				delete(m, k)
			}
		}
	}
	return nil
}

func (s *storage) RevokeToken(_ context.Context, tokenOrID, _, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range []map[string]*grant{s.access, s.refresh} {
		if g, ok := m[tokenOrID]; ok {
			if g.clientID != clientID {
				return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
			}
			delete(m, tokenOrID)
			delete(s.access, g.accessTokenID)
		}
	}
	return nil // unknown tokens count as revoked (RFC 7009)
}

func (s *storage) GetRefreshTokenInfo(_ context.Context, _, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.refresh[token]
	if !ok {
		return "", "", op.ErrInvalidRefreshToken
	}
	return g.subject, token, nil
}

// --- op.AuthStorage: keys ---

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return s.key, nil }

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) { return []op.Key{publicKey{s.key}}, nil }

// --- op.OPStorage ---

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	c, ok := s.clients[id]
	if !ok {
		return nil, errors.New("client not found")
	}
	return c, nil
}

// AuthorizeClientIDSecret is only asked when a client sends HTTP Basic
// credentials; both clients are public and have no secret to check.
func (s *storage) AuthorizeClientIDSecret(context.Context, string, string) error {
	return errors.New("public client: no client secret")
}

// SetUserinfoFromScopes is deprecated in op in favour of SetUserinfoFromRequest.
func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest fills the ID token's claims.
func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	return s.userinfo(info, req.GetSubject(), scopes)
}

// SetUserinfoFromToken fills the userinfo endpoint's answer.
func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, _, _ string) error {
	s.mu.Lock()
	g, ok := s.access[tokenID]
	s.mu.Unlock()
	if !ok || time.Now().After(g.expires) {
		return errors.New("access token invalid or expired")
	}
	return s.userinfo(info, g.subject, g.scopes)
}

func (s *storage) userinfo(info *oidc.UserInfo, userID string, scopes []string) error {
	u, ok := s.user(userID)
	if !ok {
		return errors.New("user not found")
	}
	info.Subject = u.ID
	for _, scope := range scopes {
		switch scope {
		case oidc.ScopeEmail:
			info.Email, info.EmailVerified = u.Email, true
		case oidc.ScopeProfile:
			info.PreferredUsername, info.Name = u.Username, u.Username
		case "groups":
			info.AppendClaims("groups", groupsClaim(u))
		}
	}
	return nil
}

// groupsClaim is never null: a user in no group has "groups": [].
func groupsClaim(u User) []string { return append([]string{}, u.Groups...) }

// Introspection needs an authenticated (confidential) client; there is none.
func (s *storage) SetIntrospectionFromToken(context.Context, *oidc.IntrospectionResponse, string, string, string) error {
	return errors.New("introspection not supported")
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

// No client authenticates with private_key_jwt, so there are no client keys.
func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("no client keys")
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("JWT profile grant not supported")
}

func (s *storage) Health(context.Context) error { return nil }

// --- op.DeviceAuthorizationStorage ---

func (s *storage) StoreDeviceAuthorization(_ context.Context, clientID, deviceCode, userCode string, expires time.Time, scopes []string) error {
	if _, ok := s.clients[clientID]; !ok {
		return errors.New("client not found")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.userCodes[userCode]; ok {
		return op.ErrDuplicateUserCode // op draws another one
	}
	// op does not filter device request scopes as it does authorize scopes.
	scopes = slices.DeleteFunc(slices.Clone(scopes), func(sc string) bool { return !slices.Contains(scopesSupported, sc) })
	s.devices[deviceCode] = &op.DeviceAuthorizationState{ClientID: clientID, Scopes: scopes, Expires: expires}
	s.userCodes[userCode] = deviceCode
	return nil
}

// GetDeviceAuthorizatonState (sic, op's spelling) answers each poll. An approved
// device code is handed out once and then forgotten, so it cannot be redeemed twice.
func (s *storage) GetDeviceAuthorizatonState(ctx context.Context, clientID, deviceCode string) (*op.DeviceAuthorizationState, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	state, ok := s.devices[deviceCode]
	if !ok || state.ClientID != clientID {
		return nil, errors.New("device code not found for client")
	}
	c := *state // op mutates it (GetAudience appends); hand out a copy
	if state.Done {
		delete(s.devices, deviceCode)
		for code, dc := range s.userCodes {
			if dc == deviceCode {
				delete(s.userCodes, code)
			}
		}
	}
	return &c, nil
}

// --- the types op asks storage for ---

// client is a public native client (RFC 8252): no secret, PKCE, loopback redirects.
type client struct{ id string }

func (c *client) GetID() string { return c.id }

// RedirectURIs: for native clients op matches loopback redirect URIs on path
// and query only, ignoring host and port, so any http://127.0.0.1:<port>/callback
// or http://localhost:<port>/callback is accepted: the command line's, and
// /ui/oidc/callback, the web console's of a server on loopback.
func (c *client) RedirectURIs() []string {
	return []string{"http://127.0.0.1/callback", "http://localhost/callback",
		"http://127.0.0.1/ui/oidc/callback", "http://localhost/ui/oidc/callback"}
}
func (c *client) PostLogoutRedirectURIs() []string    { return nil }
func (c *client) ApplicationType() op.ApplicationType { return op.ApplicationTypeNative }
func (c *client) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodNone }
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken, oidc.GrantTypeDeviceCode}
}

// LoginURL is where op sends the browser to sign in (see Provider.loginPage).
func (c *client) LoginURL(authReqID string) string {
	return "/login?authRequestID=" + url.QueryEscape(authReqID)
}
func (c *client) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeBearer }
func (c *client) IDTokenLifetime() time.Duration      { return 10 * time.Minute }
func (c *client) DevMode() bool                       { return false }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

// IsScopeAllowed admits scopes beyond the standard ones, which op drops otherwise.
func (c *client) IsScopeAllowed(scope string) bool { return scope == "groups" }

// IDTokenUserinfoClaimsAssertion: op follows OIDC Core 5.4 and leaves email
// and profile claims out of an ID token issued together with an access token
// unless this says otherwise; relying parties here read them from the ID token.
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *client) ClockSkew() time.Duration             { return 0 }

// authRequest is op's authorization request as op parsed and validated it,
// plus who signed in.
type authRequest struct {
	id       string
	req      oidc.AuthRequest
	userID   string
	authTime time.Time
	done     bool
}

// copy lets op read a request without holding the storage lock.
func (a *authRequest) copy() *authRequest { c := *a; return &c }

func (a *authRequest) GetID() string    { return a.id }
func (a *authRequest) GetACR() string   { return "" }
func (a *authRequest) GetAMR() []string { return []string{"pwd"} }
func (a *authRequest) GetAudience() []string {
	return []string{a.req.ClientID}
}
func (a *authRequest) GetAuthTime() time.Time { return a.authTime }
func (a *authRequest) GetClientID() string    { return a.req.ClientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge {
	return &oidc.CodeChallenge{Challenge: a.req.CodeChallenge, Method: a.req.CodeChallengeMethod}
}
func (a *authRequest) GetNonce() string                   { return a.req.Nonce }
func (a *authRequest) GetRedirectURI() string             { return a.req.RedirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType { return a.req.ResponseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode { return a.req.ResponseMode }
func (a *authRequest) GetScopes() []string                { return a.req.Scopes }
func (a *authRequest) GetState() string                   { return a.req.State }
func (a *authRequest) GetSubject() string                 { return a.userID }
func (a *authRequest) Done() bool                         { return a.done }

// grant is an issued access or refresh token. As a refresh token it is also
// the op.RefreshTokenRequest that the refresh_token grant redeems.
type grant struct {
	clientID, subject     string
	audience, scopes, amr []string
	authTime, expires     time.Time
	accessTokenID         string // refresh tokens only: the access token issued with it
}

func (g *grant) GetAMR() []string                 { return g.amr }
func (g *grant) GetAudience() []string            { return g.audience }
func (g *grant) GetAuthTime() time.Time           { return g.authTime }
func (g *grant) GetClientID() string              { return g.clientID }
func (g *grant) GetScopes() []string              { return g.scopes }
func (g *grant) GetSubject() string               { return g.subject }
func (g *grant) SetCurrentScopes(scopes []string) { g.scopes = scopes }

// signingKey is the provider's RS256 key; publicKey is its JWKS entry.
type signingKey struct {
	id      string
	private *rsa.PrivateKey
}

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k signingKey) Key() any                                    { return k.private }
func (k signingKey) ID() string                                  { return k.id }

type publicKey struct{ signingKey }

func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return &k.private.PublicKey }
