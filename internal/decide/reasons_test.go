package decide_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/store"
)

// Every way authentication fails has its own reason, whatever the error
// wraps; an error the mapping does not know is an invalid token (deny).
func TestAuthenticationReasons(t *testing.T) {
	t.Parallel()
	wrap := func(err error) error { return fmt.Errorf("verify: %w: detail", err) }
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&identity.AgentInactiveError{Agent: "a", Status: store.StatusQuarantined}, decide.ReasonAgentQuarantined},
		{&identity.AgentInactiveError{Agent: "a", Status: store.StatusDisabled}, decide.ReasonAgentDisabled},
		{identity.ErrStateUnavailable, decide.ReasonStateUnavailable},
		{identity.ErrExpired, decide.ReasonTokenExpired},
		{identity.ErrNotYetValid, decide.ReasonTokenNotYetValid},
		{identity.ErrTokenRevoked, decide.ReasonTokenRevoked},
		{identity.ErrAgentRevoked, decide.ReasonTokenRevoked},
		{identity.ErrUnknownAgent, decide.ReasonAgentUnknown},
		{identity.ErrUnknownDomain, decide.ReasonTrustDomainUnknown},
		{identity.ErrKeyNotBound, decide.ReasonKeyNotBound},
		{identity.ErrDPoPRequired, decide.ReasonDPoPRequired},
		{identity.ErrDPoP, decide.ReasonDPoPInvalid},
		{identity.ErrDPoPKeyMismatch, decide.ReasonDPoPInvalid},
		{identity.ErrReplay, decide.ReasonDPoPInvalid},
		{identity.ErrSignature, decide.ReasonTokenInvalid},
		{identity.ErrAlgorithm, decide.ReasonTokenInvalid},
		{identity.ErrWrongAudience, decide.ReasonTokenInvalid},
		{identity.ErrMalformed, decide.ReasonTokenInvalid},
		{errors.New("something new"), decide.ReasonTokenInvalid},
	} {
		if got := decide.AuthReason(wrap(tc.err)); got != tc.want {
			t.Errorf("%v: reason %s, want %s", tc.err, got, tc.want)
		}
	}
}
