package wire

import "strings"

// Reasons an enforcement point reads itself, to answer as HTTP does.
const (
	// ReasonDPoPRateExceeded: the agent's key signed more proofs than
	// Warden allows; it may try again shortly (429, not 401).
	ReasonDPoPRateExceeded = "warden.dpop_rate_exceeded"
)

// AuthFailure says whether a deny's reason is about the agent's
// credentials (its token, its proof, its key): the enforcement point
// answers 401 with a challenge instead of 403.
func AuthFailure(reason string) bool {
	if reason == ReasonDPoPRateExceeded {
		return false
	}
	for _, p := range []string{"warden.token_", "warden.dpop_", "warden.key_not_bound"} {
		if strings.HasPrefix(reason, p) {
			return true
		}
	}
	return false
}

// RateLimited says whether a deny's reason means "too many, try again
// shortly" (429 with Retry-After).
func RateLimited(reason string) bool { return reason == ReasonDPoPRateExceeded }
