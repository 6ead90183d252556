// Package sdk is the Go client for agents that Warden secures: it keeps an
// agent's key, fetches and refreshes its access tokens from the token
// endpoint, and signs the DPoP proof that binds each request to the key.
package sdk

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/warden-run/warden/internal/identity"
)

// Key is an agent's Ed25519 key pair. The private half never leaves the agent.
type Key struct {
	priv ed25519.PrivateKey
	kid  string
	// The assertion signer is built once: making a JOSE signer costs more
	// than signing.
	assertion jose.Signer
	// dpopHeader is the encoded protected header of every DPoP proof (alg,
	// typ and the public key, all fixed), made once by the JOSE signer, so
	// that a proof costs one signature and the encoding of its claims.
	dpopHeader string
}

// GenerateKey makes a new agent key.
func GenerateKey() *Key {
	_, priv := identity.GenerateKey()
	k, err := newKey(priv)
	if err != nil {
		panic(err) // a freshly generated key is always usable
	}
	return k
}

// ParseKey reads a private key in JWK form.
func ParseKey(jwk []byte) (*Key, error) {
	priv, err := identity.ParsePrivateJWK(jwk)
	if err != nil {
		return nil, err
	}
	return newKey(priv)
}

// LoadKey reads a private JWK file written by WriteFiles or `warden agent
// keygen`. It refuses a file that others can read.
func LoadKey(path string) (*Key, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	// A public key is what people give by mistake (keygen writes both):
	// say so, rather than ask them to hide a file that holds no secret.
	if isPublicJWK(b) {
		return nil, fmt.Errorf("key file %s holds a public key: give the private key (keygen writes it beside the public one, without .pub)", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key file %s is readable by others (mode %04o); run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	k, err := ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

// isPublicJWK reports whether b is a public Ed25519 JWK.
func isPublicJWK(b []byte) bool {
	var k jose.JSONWebKey
	if k.UnmarshalJSON(b) != nil {
		return false
	}
	_, ok := k.Key.(ed25519.PublicKey)
	return ok
}

func newKey(priv ed25519.PrivateKey) (*Key, error) {
	kid := identity.Thumbprint(priv.Public().(ed25519.PublicKey))
	a, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: priv}, (&jose.SignerOptions{}).WithHeader("kid", kid))
	if err != nil {
		return nil, err
	}
	d, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: priv}, (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		return nil, err
	}
	first, err := sign(d, struct{}{})
	if err != nil {
		return nil, err
	}
	header, _, _ := strings.Cut(first, ".")
	return &Key{priv: priv, kid: kid, assertion: a, dpopHeader: header}, nil
}

// Thumbprint is the RFC 7638 thumbprint of the public key: its kid, and the
// cnf.jkt of the tokens bound to it.
func (k *Key) Thumbprint() string { return k.kid }

// PublicJWK returns the public key as a JWK, to register with Warden.
func (k *Key) PublicJWK() []byte { return identity.PublicJWK(k.priv.Public().(ed25519.PublicKey)) }

// PrivateJWK returns the private key as a JWK. Keep it secret.
func (k *Key) PrivateJWK() []byte { return identity.PrivateJWK(k.priv) }

// PublicPath returns where WriteFiles puts the public key for a private key
// file: agent.jwk -> agent.pub.jwk.
func PublicPath(privPath string) string {
	return strings.TrimSuffix(privPath, ".jwk") + ".pub.jwk"
}

// WriteFiles writes the private key to privPath (mode 0600, never
// overwriting) and the public key beside it (see PublicPath).
func (k *Key) WriteFiles(privPath string) (pubPath string, err error) {
	pubPath = PublicPath(privPath)
	if err := identity.WriteFileExclusive(privPath, append(k.PrivateJWK(), '\n'), 0o600); err != nil {
		return "", err
	}
	if err := identity.WriteFileExclusive(pubPath, append(k.PublicJWK(), '\n'), 0o644); err != nil {
		os.Remove(privPath)
		return "", err
	}
	return pubPath, nil
}

// Assertion makes an RFC 7523 client assertion: a JWT with iss and sub set to
// the agent id, aud to the issuer, a fresh jti and a 30-second lifetime.
func (k *Key) Assertion(agentID, issuer string) (string, error) {
	now := time.Now()
	c := jwt.Claims{Issuer: agentID, Subject: agentID, Audience: jwt.Audience{issuer}, ID: randomID(),
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(30 * time.Second))}
	return sign(k.assertion, c)
}

// DPoPProof makes an RFC 9449 proof for one request: method and url (its
// query and fragment are left out), bound to accessToken when it is not empty.
func (k *Key) DPoPProof(method, url, accessToken string) (string, error) {
	if i := strings.IndexAny(url, "?#"); i >= 0 {
		url = url[:i]
	}
	c := dpopClaims{JTI: randomID(), HTM: method, HTU: url, IAT: time.Now().Unix()}
	if accessToken != "" {
		c.ATH = identity.AccessTokenHash(accessToken)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	input := make([]byte, 0, len(k.dpopHeader)+1+enc.EncodedLen(len(payload))+1+enc.EncodedLen(ed25519.SignatureSize))
	input = append(input, k.dpopHeader...)
	input = append(input, '.')
	input = enc.AppendEncode(input, payload)
	sig := ed25519.Sign(k.priv, input)
	return string(enc.AppendEncode(append(input, '.'), sig)), nil
}

// dpopClaims are the claims of a DPoP proof (RFC 9449 section 4.2).
type dpopClaims struct {
	JTI string `json:"jti"`
	HTM string `json:"htm"`
	HTU string `json:"htu"`
	IAT int64  `json:"iat"`
	ATH string `json:"ath,omitempty"`
}

func sign(s jose.Signer, claims any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := s.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

func randomID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
