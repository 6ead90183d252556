package decide_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
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
		{identity.ErrWrongAudience, decide.ReasonWrongAudience},
		{identity.ErrMalformed, decide.ReasonTokenInvalid},
		{&identity.RateLimitError{Err: identity.ErrProofRateExceeded}, decide.ReasonDPoPRateExceeded},
		{fmt.Errorf("%w: proof %w", identity.ErrDPoP, identity.ErrReplayCacheIsFull), decide.ReasonStateUnavailable},
		{errors.New("something new"), decide.ReasonTokenInvalid},
	} {
		if got := decide.AuthReason(wrap(tc.err)); got != tc.want {
			t.Errorf("%v: reason %s, want %s", tc.err, got, tc.want)
		}
	}
}

// Numbers in what an enforcement point sends keep every digit.
func TestRequestKeepsNumbers(t *testing.T) {
	t.Parallel()
	var r decide.Request
	err := json.Unmarshal([]byte(`{"token": "t", "action": "a", "resource": {"kind": "k", "id": "i", "attributes": {"rows": 12345678901234567890}}}`), &r)
	if err != nil || r.Resource.Attributes["rows"] != json.Number("12345678901234567890") {
		t.Fatalf("%v %#v", err, r.Resource.Attributes)
	}
	if err := json.Unmarshal([]byte(`{"resource": {"kind": "k", "idd": "i"}}`), &r); err == nil || !strings.Contains(err.Error(), "idd") {
		t.Fatalf("an unknown resource field: %v", err)
	}
}
