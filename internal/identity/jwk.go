package identity

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"
)

// ErrInvalidKey is wrapped by every error about a malformed or unsuitable key.
var ErrInvalidKey = errors.New("invalid key")

// Thumbprint returns the RFC 7638 SHA-256 thumbprint of an Ed25519 public
// key, base64url without padding: the kid of issuer keys and the cnf.jkt of
// access tokens.
func Thumbprint(pub ed25519.PublicKey) string {
	// For OKP keys RFC 8037 fixes the members to crv, kty and x, in that order.
	canon := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := crypto.SHA256.New()
	sum.Write([]byte(canon))
	return base64.RawURLEncoding.EncodeToString(sum.Sum(nil))
}

// ParsePublicJWK parses an Ed25519 public key in JWK form. It refuses
// anything else, private keys above all: an agent's private key never leaves it.
func ParsePublicJWK(b []byte) (ed25519.PublicKey, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object: %v", ErrInvalidKey, err)
	}
	if _, ok := probe["d"]; ok {
		return nil, fmt.Errorf("%w: this JWK holds a private key; register the public key (the .pub.jwk file) and keep the private one with the agent", ErrInvalidKey)
	}
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	pub, ok := k.Key.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: want an Ed25519 key (kty OKP, crv Ed25519), got %T", ErrInvalidKey, k.Key)
	}
	if k.Algorithm != "" && k.Algorithm != string(jose.EdDSA) {
		return nil, fmt.Errorf("%w: alg %q; an Ed25519 key signs with EdDSA", ErrInvalidKey, k.Algorithm)
	}
	if k.Use != "" && k.Use != "sig" {
		return nil, fmt.Errorf("%w: use %q; want sig", ErrInvalidKey, k.Use)
	}
	return pub, nil
}

// PublicJWK returns the canonical public JWK of pub, with kid set to its thumbprint.
func PublicJWK(pub ed25519.PublicKey) []byte {
	b, err := json.Marshal(jose.JSONWebKey{Key: pub, KeyID: Thumbprint(pub), Algorithm: string(jose.EdDSA), Use: "sig"})
	if err != nil {
		panic(err) // marshalling a valid Ed25519 key cannot fail
	}
	return b
}

// PrivateJWK returns priv as a private JWK with kid set to its thumbprint.
func PrivateJWK(priv ed25519.PrivateKey) []byte {
	pub := priv.Public().(ed25519.PublicKey)
	b, err := json.Marshal(jose.JSONWebKey{Key: priv, KeyID: Thumbprint(pub), Algorithm: string(jose.EdDSA), Use: "sig"})
	if err != nil {
		panic(err)
	}
	return b
}

// ParsePrivateJWK parses an Ed25519 private key in JWK form.
func ParsePrivateJWK(b []byte) (ed25519.PrivateKey, error) {
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	priv, ok := k.Key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: want an Ed25519 private key (kty OKP, crv Ed25519, with d), got %T", ErrInvalidKey, k.Key)
	}
	return priv, nil
}

// GenerateKey makes a new Ed25519 key pair.
func GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return pub, priv
}
