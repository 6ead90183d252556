package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/warden-run/warden/internal/store"
)

// The JWS types of an agent's signed statements: a vote on an approval
// request; a grant request or the completion of its task.
const (
	StatementTypeApproval = "warden-approval+jwt"
	StatementTypeGrant    = "warden-grant+jwt"
)

// StatementClaims are the claims every signed statement carries: iss and
// sub the agent, aud where it is addressed, a short lifetime and a jti.
type StatementClaims = assertionClaims

// VerifyStatement verifies a statement an agent signed with its own key:
// a compact JWS of type typ, signed with EdDSA by an active key of the
// agent that iss and sub name, addressed to aud (a URL of this issuer),
// short-lived. It decodes the claims into claims and returns the agent.
// The refusals are those of a client assertion, timing included.
func (i *TokenIssuer) VerifyStatement(ctx context.Context, raw, typ, aud string, claims any) (store.Agent, error) {
	if len(raw) > maxTokenLen {
		return store.Agent{}, fmt.Errorf("%w: statement longer than %d bytes", ErrMalformed, maxTokenLen)
	}
	hdr, err := peekHeader(raw)
	if err != nil {
		return store.Agent{}, err
	}
	if hdr.Alg != string(jose.EdDSA) {
		return store.Agent{}, fmt.Errorf("%w: %q (only EdDSA)", ErrAlgorithm, hdr.Alg)
	}
	if !strings.EqualFold(hdr.Typ, typ) {
		return store.Agent{}, fmt.Errorf("%w: typ %q, want %q", ErrTokenType, hdr.Typ, typ)
	}
	jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil || len(jws.Signatures) != 1 {
		return store.Agent{}, fmt.Errorf("%w: not a single-signature compact JWS", ErrMalformed)
	}
	var c assertionClaims
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c); err != nil {
		return store.Agent{}, fmt.Errorf("%w: claims are not a JSON object of JWT claims", ErrMalformed)
	}
	if c.Issuer != c.Subject {
		return store.Agent{}, fmt.Errorf("%w: iss and sub must both be the agent id", ErrMalformed)
	}
	id, err := ParseAgentID(c.Subject)
	if err != nil {
		return store.Agent{}, err
	}
	av, _, err := i.assertionKey(ctx, id, hdr.Kid, jws)
	if err != nil {
		return store.Agent{}, err
	}
	if err := i.checkClaims(&c, aud, i.now()); err != nil {
		return store.Agent{}, err
	}
	// Verified: the payload is what the agent signed.
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), claims); err != nil {
		return store.Agent{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	// Once: a statement captured in flight cannot be sent again.
	err = i.replay.MarkUsed(ctx, "statement:"+typ+":"+id.String(), c.ID, c.Expiry.Time().Add(i.cfg.ClockSkew))
	switch {
	case errors.Is(err, store.ErrReplay):
		return store.Agent{}, fmt.Errorf("%w: statement jti of %s", ErrReplay, id)
	case err != nil:
		return store.Agent{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return av.rec, nil
}
