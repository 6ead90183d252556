package oidctest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// TokenOption changes a token minted by Provider.IDToken, mostly into one a
// relying party must refuse.
type TokenOption func(*tokenSettings)

type tokenSettings struct {
	issuer           string
	audience         []string
	issuedAt, expiry time.Time
	nonce            string
	azp              string
	unsigned         bool
	foreignKey       bool
}

// Expired: exp 10 minutes in the past (iat 15 minutes in the past).
func Expired() TokenOption {
	return func(s *tokenSettings) {
		s.expiry = time.Now().Add(-10 * time.Minute)
		s.issuedAt = s.expiry.Add(-5 * time.Minute)
	}
}

// Audience: aud is [aud] instead of [ClientID].
func Audience(aud string) TokenOption { return func(s *tokenSettings) { s.audience = []string{aud} } }

// Issuer: iss is iss instead of the provider's issuer.
func Issuer(iss string) TokenOption { return func(s *tokenSettings) { s.issuer = iss } }

// Unsigned: alg "none" and an empty signature.
func Unsigned() TokenOption { return func(s *tokenSettings) { s.unsigned = true } }

// ForeignKey: signed by a fresh RSA key that is not in the provider's JWKS,
// under the kid of the provider's real key, so only the signature check can
// tell.
func ForeignKey() TokenOption { return func(s *tokenSettings) { s.foreignKey = true } }

// Audiences: aud is these.
func Audiences(aud ...string) TokenOption { return func(s *tokenSettings) { s.audience = aud } }

// AuthorizedParty sets the azp claim.
func AuthorizedParty(azp string) TokenOption { return func(s *tokenSettings) { s.azp = azp } }

// IssuedIn: iat is now plus d (in the future for d > 0).
func IssuedIn(d time.Duration) TokenOption {
	return func(s *tokenSettings) { s.issuedAt = time.Now().Add(d) }
}

// Nonce sets the nonce claim.
func Nonce(n string) TokenOption { return func(s *tokenSettings) { s.nonce = n } }

// IDToken mints an ID token for user directly, without a flow, signed (RS256)
// by the provider's own signing key unless an option says otherwise. Default
// claims: iss = p.Issuer, aud = [ClientID], exp = now+5m, iat = now,
// sub = user.ID (Username if empty), email, email_verified, preferred_username,
// groups.
func (p *Provider) IDToken(t testing.TB, user User, opts ...TokenOption) string {
	t.Helper()
	now := time.Now()
	s := tokenSettings{issuer: p.Issuer, audience: []string{ClientID}, issuedAt: now, expiry: now.Add(5 * time.Minute)}
	for _, opt := range opts {
		opt(&s)
	}
	if user.ID == "" {
		user.ID = user.Username
	}
	claims := map[string]any{
		"iss":                s.issuer,
		"sub":                user.ID,
		"aud":                s.audience,
		"iat":                s.issuedAt.Unix(),
		"exp":                s.expiry.Unix(),
		"email":              user.Email,
		"email_verified":     true,
		"preferred_username": user.Username,
		"groups":             append([]string{}, user.Groups...), // never null
	}
	if s.nonce != "" {
		claims["nonce"] = s.nonce
	}
	if s.azp != "" {
		claims["azp"] = s.azp
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatalf("oidctest: %v", err)
	}

	if s.unsigned {
		// go-jose will not produce alg "none", so assemble it by hand (RFC 7519 6.1).
		enc := base64.RawURLEncoding.EncodeToString
		return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(payload) + "."
	}
	kid, key := p.SigningKey()
	if s.foreignKey {
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatalf("oidctest: %v", err)
		}
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatalf("oidctest: %v", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatalf("oidctest: %v", err)
	}
	token, err := jws.CompactSerialize()
	if err != nil {
		t.Fatalf("oidctest: %v", err)
	}
	return token
}
