package identity

import (
	"errors"
	"net/http"
)

// OAuthError is an RFC 6749 section 5.2 error response. Its description is
// fixed per kind of failure and never says which check failed where that
// would help an attacker; the full reason goes to the server's log only.
type OAuthError struct {
	Status      int    `json:"-"`
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
	// RetryAfter, for a 429, is the Retry-After header in seconds.
	RetryAfter int `json:"-"`
}

// OAuthErrorFor maps an error from TokenIssuer.Issue to its response.
func OAuthErrorFor(err error) OAuthError {
	var limited *RateLimitError
	switch {
	// First: a rate limit's refusal says when to come back, whatever else the error wraps.
	case errors.As(err, &limited):
		return OAuthError{Status: http.StatusTooManyRequests, Code: "slow_down",
			Description: "too many requests; retry after the time Retry-After gives", RetryAfter: limited.RetryAfterSeconds()}
	// Then: a refusal because Warden could not check is not the client's fault.
	case errors.Is(err, ErrStateUnavailable), errors.Is(err, ErrUnavailable):
		return OAuthError{http.StatusServiceUnavailable, "temporarily_unavailable", "try again shortly", 0}
	case errors.Is(err, errClientAuth):
		return OAuthError{http.StatusUnauthorized, "invalid_client", "client authentication failed", 0}
	case errors.Is(err, ErrUnsupportedGrant):
		return OAuthError{http.StatusBadRequest, "unsupported_grant_type", "the grant type is not supported", 0}
	case errors.Is(err, ErrLifetime):
		return OAuthError{http.StatusBadRequest, "invalid_request", "the requested lifetime exceeds the maximum", 0}
	case errors.Is(err, ErrInvalidRequest):
		// Request-shape problems: the message names the parameter and holds no secret.
		return OAuthError{http.StatusBadRequest, "invalid_request", requestMessage(err), 0}
	case errors.Is(err, ErrInvalidTarget):
		return OAuthError{http.StatusBadRequest, "invalid_target", "the requested resource is not served here", 0}
	case errors.Is(err, ErrInvalidScope), errors.Is(err, ErrDelegationWidens):
		return OAuthError{http.StatusBadRequest, "invalid_scope", "the requested scope exceeds what may be granted", 0}
	case errors.Is(err, errSubjectToken):
		return OAuthError{http.StatusBadRequest, "invalid_grant", "the presented token is not valid", 0}
	case errors.Is(err, ErrDelegationDenied), errors.Is(err, ErrChainTooDeep):
		return OAuthError{http.StatusBadRequest, "invalid_grant", "delegation not permitted", 0}
	case errors.Is(err, ErrDPoP), errors.Is(err, ErrDPoPKeyMismatch):
		return OAuthError{http.StatusBadRequest, "invalid_dpop_proof", "the DPoP proof is not valid", 0}
	}
	return OAuthError{http.StatusInternalServerError, "server_error", "internal error", 0}
}

func requestMessage(err error) string {
	msg := err.Error()
	const prefix = "invalid request: "
	if len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
		return msg[len(prefix):]
	}
	return msg
}
