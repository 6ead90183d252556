// Package oidctest runs a real OpenID Connect provider inside Go tests: a
// devidp.Provider (see package devidp) that stops when the test ends, plus
// IDToken, which mints ID tokens signed by the provider's own key, mostly ones
// a relying party must refuse.
//
// The protocol endpoints are served by github.com/zitadel/oidc/v3/pkg/op, an
// OpenID-certified implementation. Relying-party code under test talks to it
// over HTTP exactly as it would to a production provider, so what it accepts
// here it accepts there.
package oidctest

import (
	"testing"

	"github.com/warden-run/warden/internal/humans/devidp"
)

// ClientID is a public native client: PKCE S256 required, loopback redirect
// URIs on any port (http://127.0.0.1:<any>/callback and
// http://localhost:<any>/callback), grant types authorization_code,
// refresh_token and urn:ietf:params:oauth:grant-type:device_code; scopes
// openid email profile groups offline_access.
const ClientID = devidp.ClientID

// OtherClientID is a second public client, configured like ClientID, for
// "ID token issued to another audience" tests.
const OtherClientID = devidp.OtherClientID

// User is a person who can sign in at the provider.
type User = devidp.User

// Provider is a running OpenID Connect provider. Issuer (http://127.0.0.1:<port>,
// no trailing slash), BrowserLogin, ApproveDevice and DenyDevice are
// devidp.Provider's.
type Provider struct {
	*devidp.Provider
}

// Start starts a provider on 127.0.0.1 on a free port, with these users; it
// stops at t.Cleanup. A user without an ID gets its Username as ID.
func Start(t testing.TB, users ...User) *Provider {
	t.Helper()
	p, err := devidp.Start(users...)
	if err != nil {
		t.Fatalf("oidctest: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("oidctest: stopping the provider: %v", err)
		}
	})
	return &Provider{p}
}
