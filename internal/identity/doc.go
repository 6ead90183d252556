// Package identity gives every AI agent a verifiable identity: agent ids,
// the agent registry, issuer signing keys, access tokens, token exchange,
// DPoP proofs and the token verifier that enforcement points use.
package identity
