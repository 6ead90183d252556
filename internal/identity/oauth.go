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
}

// OAuthErrorFor maps an error from TokenIssuer.Issue to its response.
func OAuthErrorFor(err error) OAuthError {
	switch {
	// First: a refusal because Warden could not check is not the client's fault.
	case errors.Is(err, ErrStateUnavailable), errors.Is(err, ErrUnavailable):
		return OAuthError{http.StatusServiceUnavailable, "temporarily_unavailable", "try again shortly"}
	case errors.Is(err, errClientAuth):
		return OAuthError{http.StatusUnauthorized, "invalid_client", "client authentication failed"}
	case errors.Is(err, ErrUnsupportedGrant):
		return OAuthError{http.StatusBadRequest, "unsupported_grant_type", "the grant type is not supported"}
	case errors.Is(err, ErrLifetime):
		return OAuthError{http.StatusBadRequest, "invalid_request", "the requested lifetime exceeds the maximum"}
	case errors.Is(err, ErrInvalidRequest):
		// Request-shape problems: the message names the parameter and holds no secret.
		return OAuthError{http.StatusBadRequest, "invalid_request", requestMessage(err)}
	case errors.Is(err, ErrInvalidTarget):
		return OAuthError{http.StatusBadRequest, "invalid_target", "the requested resource is not served here"}
	case errors.Is(err, ErrInvalidScope), errors.Is(err, ErrDelegationWidens):
		return OAuthError{http.StatusBadRequest, "invalid_scope", "the requested scope exceeds what may be granted"}
	case errors.Is(err, errSubjectToken):
		return OAuthError{http.StatusBadRequest, "invalid_grant", "the presented token is not valid"}
	case errors.Is(err, ErrDelegationDenied), errors.Is(err, ErrChainTooDeep):
		return OAuthError{http.StatusBadRequest, "invalid_grant", "delegation not permitted"}
	case errors.Is(err, ErrDPoP), errors.Is(err, ErrDPoPKeyMismatch):
		return OAuthError{http.StatusBadRequest, "invalid_dpop_proof", "the DPoP proof is not valid"}
	}
	return OAuthError{http.StatusInternalServerError, "server_error", "internal error"}
}

func requestMessage(err error) string {
	msg := err.Error()
	const prefix = "invalid request: "
	if len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
		return msg[len(prefix):]
	}
	return msg
}
