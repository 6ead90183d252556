// Package devidp is a small OpenID Connect provider for local development and
// the demo; it is not for production. Its users, passwords, keys and tokens
// live in memory only, its clients are public, and its issuer is plain http on
// 127.0.0.1.
//
// The protocol endpoints (discovery, JWKS, authorize, token, device
// authorization, userinfo, revocation, end session) are served by
// github.com/zitadel/oidc/v3/pkg/op, an OpenID-certified implementation; this
// package adds only in-memory storage, a sign-in page, a device verification
// page, and helpers that play the person at the browser. Relying-party code
// talks to it over HTTP exactly as it would to a production provider, so what
// it accepts here it accepts there.
//
// # Logging
//
// This package logs nothing itself. op logs through [slog.Default] (its
// per-provider logger options are deprecated no-ops): refused requests at
// WARN, and every poll of a device that waits for its person at INFO. To keep
// that out of a program's output without silencing anything else, install
// [QuietHandler] around the program's own handler.
package devidp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"
)

// ClientID is a public native client: PKCE S256 required, loopback redirect
// URIs on any port (http://127.0.0.1:<any>/callback and
// http://localhost:<any>/callback), grant types authorization_code,
// refresh_token and urn:ietf:params:oauth:grant-type:device_code; scopes
// openid email profile groups offline_access.
const ClientID = "warden-cli"

// OtherClientID is a second public client, configured like ClientID, for
// "ID token issued to another audience" tests.
const OtherClientID = "other-app"

// User is a person who can sign in at the provider.
type User struct {
	ID, Username, Password, Email string
	// Groups is the "groups" claim (a JSON array of strings) of ID tokens and
	// userinfo when the scope "groups" is asked for.
	Groups []string
}

// Provider is a running OpenID Connect provider.
type Provider struct {
	// Issuer is http://127.0.0.1:<port>, no trailing slash.
	Issuer string

	store     *storage
	op        *op.Provider
	srv       *http.Server
	served    chan struct{} // closed when srv.Serve has returned
	transport *http.Transport

	closeOnce sync.Once
	closeErr  error
}

// Start starts a provider on 127.0.0.1 on a free port, with these users. A
// user without an ID gets its Username as ID. Close stops it.
func Start(users ...User) (*Provider, error) {
	users = slices.Clone(users)
	for i := range users {
		if users[i].ID == "" {
			users[i].ID = users[i].Username
		}
	}
	store, err := newStorage(users)
	if err != nil {
		return nil, err
	}
	// Listening first makes the issuer URL known before the provider, which
	// needs it, is built.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Provider{
		Issuer:    "http://" + ln.Addr().String(),
		store:     store,
		served:    make(chan struct{}),
		transport: http.DefaultTransport.(*http.Transport).Clone(),
	}

	config := &op.Config{
		CodeMethodS256:        true,
		GrantTypeRefreshToken: true,
		SupportedScopes:       scopesSupported,
		SupportedClaims:       append(slices.Clone(op.DefaultSupportedClaims), "groups"),
		DeviceAuthorization: op.DeviceAuthorizationConfig{
			Lifetime: 5 * time.Minute,
			// The least an RFC 8628 client (golang.org/x/oauth2) waits between polls;
			// 0 would mean its default of 5s.
			PollInterval: time.Second,
			UserFormPath: "/device",
			UserCode:     op.UserCodeBase20,
		},
	}
	// Opaque access tokens are op-encrypted "tokenID:subject" strings.
	rand.Read(config.CryptoKey[:])
	p.op, err = op.NewProvider(config, store, op.StaticIssuer(p.Issuer),
		op.WithAllowInsecure()) // http:// issuer; op refuses one otherwise
	if err != nil {
		ln.Close()
		return nil, err
	}
	// op.AuthCallbackURL reads the issuer from the request context, which op
	// sets only on its own routes; the sign-in page needs this interceptor too.
	withIssuer := op.NewIssuerInterceptor(p.op.IssuerFromRequest)

	mux := http.NewServeMux()
	mux.Handle("/login", withIssuer.HandlerFunc(p.loginPage))
	mux.HandleFunc("GET /device", p.deviceStart)
	mux.HandleFunc("POST /device/login", p.deviceLogin)
	mux.HandleFunc("POST /device/confirm", p.deviceConfirm)
	mux.Handle("/", p.op)
	p.srv = &http.Server{
		Handler:           markRequests(mux),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		defer close(p.served)
		p.srv.Serve(ln) // returns http.ErrServerClosed after Close
	}()
	return p, nil
}

// Close stops the provider: it stops accepting connections, waits up to five
// seconds for requests in flight, then closes whatever is left. Calling it
// again returns the first call's result.
func (p *Provider) Close() error {
	p.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if p.srv.Shutdown(ctx) != nil { // requests still in flight: cut them off
			p.closeErr = p.srv.Close()
		}
		<-p.served
		p.transport.CloseIdleConnections()
	})
	return p.closeErr
}

// SigningKey returns the provider's signing key, the one its JWKS publishes
// (RS256) and its ID tokens are signed with, and its key ID, so that test
// helpers can mint tokens the provider's relying parties accept. The key does
// not change while the provider runs; do not modify it.
func (p *Provider) SigningKey() (kid string, key *rsa.PrivateKey) {
	return p.store.key.id, p.store.key.private
}
