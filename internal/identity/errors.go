package identity

import (
	"errors"
	"fmt"

	"github.com/warden-run/warden/internal/store"
)

// Reasons a token, assertion, proof or request is refused. Every refusal
// wraps exactly one of them, so callers and tests can tell which check failed
// with errors.Is; the message adds detail for the server's log. None of them
// ever carries a token or key.
var (
	ErrMalformed         = errors.New("malformed token")
	ErrAlgorithm         = errors.New("signature algorithm not allowed")
	ErrTokenType         = errors.New("wrong token type")
	ErrUnknownKey        = errors.New("unknown signing key")
	ErrSignature         = errors.New("bad signature")
	ErrWrongIssuer       = errors.New("wrong issuer")
	ErrWrongAudience     = errors.New("wrong audience")
	ErrExpired           = errors.New("expired")
	ErrNotYetValid       = errors.New("not yet valid")
	ErrLifetime          = errors.New("lifetime too long")
	ErrMissingClaim      = errors.New("required claim missing")
	ErrReplay            = errors.New("replayed")
	ErrUnknownAgent      = errors.New("unknown agent")
	ErrUnknownDomain     = errors.New("trust domain not declared")
	ErrAgentInactive     = errors.New("agent disabled or quarantined")
	ErrTokenRevoked      = errors.New("token revoked")
	ErrAgentRevoked      = errors.New("agent's tokens revoked")
	ErrKeyNotBound       = errors.New("key not registered for the agent")
	ErrDPoP              = errors.New("invalid DPoP proof")
	ErrDPoPRequired      = errors.New("DPoP proof required")
	ErrDPoPKeyMismatch   = errors.New("DPoP key does not match the token's cnf.jkt")
	ErrDelegationDenied  = errors.New("delegation not allowed")
	ErrDelegationWidens  = errors.New("delegation would widen privileges")
	ErrChainTooDeep      = errors.New("delegation chain too deep")
	ErrInvalidRequest    = errors.New("invalid request")
	ErrUnsupportedGrant  = errors.New("unsupported grant type")
	ErrInvalidScope      = errors.New("invalid scope")
	ErrInvalidTarget     = errors.New("invalid target")
	ErrReplayCacheIsFull = errors.New("replay cache full")
	// ErrUnavailable: a store Warden needs did not answer; the request is
	// refused and may be retried.
	ErrUnavailable = errors.New("temporarily unavailable")
)

// AgentInactiveError is ErrAgentInactive with the agent and its status.
type AgentInactiveError struct {
	Agent  string
	Status store.AgentStatus
}

func (e *AgentInactiveError) Error() string {
	return fmt.Sprintf("%v: %s is %s", ErrAgentInactive, e.Agent, e.Status)
}

func (e *AgentInactiveError) Unwrap() error { return ErrAgentInactive }
