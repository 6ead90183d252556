package identity

import (
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

// Limits no configuration can raise.
const (
	// MaxTokenLifetime is the longest access token lifetime Warden issues or accepts.
	MaxTokenLifetime = 15 * time.Minute
	// MaxAssertionLifetime is how far ahead of now a client assertion's exp may be.
	MaxAssertionLifetime = 60 * time.Second
	// MaxDelegationDepth is the deepest act chain a token may carry.
	MaxDelegationDepth = 5
)

// Claims are the claims of a Warden access token (RFC 9068 profile, with
// cnf from RFC 7800/9449 and act from RFC 8693).
type Claims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.Audience     `json:"aud"`
	Expiry    *jwt.NumericDate `json:"exp"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	ID        string           `json:"jti"`
	// ClientID is the agent the token was issued to: the subject, or for a
	// delegated token the current actor.
	ClientID    string        `json:"client_id"`
	Cnf         *Confirmation `json:"cnf"`
	TrustDomain string        `json:"td"`
	Roles       []string      `json:"roles"`
	Act         *Actor        `json:"act,omitempty"`
	// DelegatedFrom lists the jti of every token this one was exchanged
	// from, nearest first; revoking any of them revokes this one too.
	DelegatedFrom []string `json:"delegated_from,omitempty"`
	// OriginIssuedAt is the iat of the first token of the chain. Agent-wide
	// revocations are checked against it, so a token delegated after an
	// agent's revocation (by a replica that had not heard of it yet) from a
	// token issued before it is dead too.
	OriginIssuedAt *jwt.NumericDate `json:"origin_iat,omitempty"`
	// Task is the task a delegating agent bound the token to at token
	// exchange: the scope of the taints the token's reads set, which
	// the agent cannot change.
	Task string `json:"task,omitempty"`
}

// ValidTask says whether t can name a task: 1 to 128 of A-Z, a-z, 0-9,
// '.', '_', ':', '-'.
func ValidTask(t string) bool {
	if t == "" || len(t) > 128 {
		return false
	}
	for _, c := range []byte(t) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// Confirmation binds a token to a key (RFC 7800, RFC 9449).
type Confirmation struct {
	// JKT is the RFC 7638 thumbprint of the key the token is bound to.
	JKT string `json:"jkt"`
}

// Actor is one link of a delegation chain (RFC 8693 act claim): the current
// actor, with the actors before it nested inside.
type Actor struct {
	Subject string `json:"sub"`
	Act     *Actor `json:"act,omitempty"`
}

// Depth counts the links of the chain that starts at a.
func (a *Actor) Depth() int {
	n := 0
	for ; a != nil; a = a.Act {
		n++
	}
	return n
}

// Chain lists the actors from the current one back to the first.
func (a *Actor) Chain() []string {
	var out []string
	for ; a != nil; a = a.Act {
		out = append(out, a.Subject)
	}
	return out
}

// Presenter is the agent that may present the token: the current actor of a
// delegated token, otherwise its subject. Its key is the one in cnf.jkt.
func (c *Claims) Presenter() string {
	if c.Act != nil {
		return c.Act.Subject
	}
	return c.Subject
}
