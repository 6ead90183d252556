package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/warden-run/warden/internal/store"
)

// errClientAuth marks every failure to authenticate the client; the token
// endpoint answers all of them alike (invalid_client).
var errClientAuth = errors.New("client authentication failed")

// client is an agent authenticated by a client assertion.
type client struct {
	id    AgentID
	agent store.Agent
	kid   string // thumbprint of the key that signed the assertion
	jti   string
	exp   time.Time
}

type assertionClaims struct {
	jwt.Claims
}

// authenticate verifies an RFC 7523 client assertion: signed by a
// registered, active key of the agent it names in iss and sub, addressed to
// this issuer, short-lived and never seen before. It does not record the jti;
// consume does, once the whole request has passed.
func (i *TokenIssuer) authenticate(ctx context.Context, req TokenRequest) (*client, error) {
	if req.ClientAssertionType != AssertionTypeJWTBearer {
		if req.ClientAssertionType == "" && req.ClientAssertion == "" {
			return nil, fmt.Errorf("%w: %w: a client assertion (private_key_jwt) is required", errClientAuth, ErrInvalidRequest)
		}
		return nil, fmt.Errorf("%w: client_assertion_type must be %s", ErrInvalidRequest, AssertionTypeJWTBearer)
	}
	c, err := i.verifyAssertion(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errClientAuth, err)
	}
	return c, nil
}

func (i *TokenIssuer) verifyAssertion(ctx context.Context, req TokenRequest) (*client, error) {
	raw := req.ClientAssertion
	if len(raw) > maxTokenLen {
		return nil, fmt.Errorf("%w: assertion longer than %d bytes", ErrMalformed, maxTokenLen)
	}
	hdr, err := peekHeader(raw)
	if err != nil {
		return nil, err
	}
	if hdr.Alg != string(jose.EdDSA) {
		return nil, fmt.Errorf("%w: %q (only EdDSA)", ErrAlgorithm, hdr.Alg)
	}
	if strings.EqualFold(hdr.Typ, "at+jwt") || strings.EqualFold(hdr.Typ, "dpop+jwt") {
		return nil, fmt.Errorf("%w: typ %q is not a client assertion", ErrTokenType, hdr.Typ)
	}
	jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil || len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: not a single-signature compact JWS", ErrMalformed)
	}
	// Read the claims before verifying, only to learn which agent's keys to
	// verify with; nothing else is trusted until the signature checks out.
	var c assertionClaims
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c); err != nil {
		return nil, fmt.Errorf("%w: claims are not a JSON object of JWT claims", ErrMalformed)
	}
	if c.Issuer != c.Subject {
		return nil, fmt.Errorf("%w: iss and sub must both be the agent id", ErrMalformed)
	}
	if req.ClientID != "" && req.ClientID != c.Subject {
		return nil, fmt.Errorf("%w: client_id does not match the assertion's sub", ErrMalformed)
	}
	id, err := ParseAgentID(c.Subject)
	if err != nil {
		return nil, err
	}
	if _, ok := i.cfg.TrustDomains[id.TrustDomain()]; !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownDomain, id.TrustDomain())
	}
	view := i.verifier.view
	if err := view.Fresh(); err != nil {
		return nil, err
	}
	av, err := view.lookupAgent(ctx, id.String())
	if err != nil {
		return nil, err
	}
	if !av.status.MayHoldTokens() {
		return nil, fmt.Errorf("%w: %s is %s", ErrAgentInactive, id, av.status)
	}
	now := i.now()
	kid := ""
	if hdr.Kid != "" {
		k, ok := av.keys[hdr.Kid]
		if !ok || !k.activeAt(now) {
			return nil, fmt.Errorf("%w: kid %q is not an active key of %s", ErrKeyNotBound, hdr.Kid, id)
		}
		if _, err := jws.Verify(k.pub); err != nil {
			return nil, fmt.Errorf("%w: assertion of %s", ErrSignature, id)
		}
		kid = hdr.Kid
	} else {
		for k, key := range av.keys {
			if key.activeAt(now) {
				if _, err := jws.Verify(key.pub); err == nil {
					kid = k
					break
				}
			}
		}
		if kid == "" {
			return nil, fmt.Errorf("%w: no active key of %s verifies the assertion", ErrSignature, id)
		}
	}
	if err := i.checkAssertionClaims(&c, now); err != nil {
		return nil, err
	}
	return &client{id: id, agent: av.rec, kid: kid, jti: c.ID, exp: c.Expiry.Time()}, nil
}

func (i *TokenIssuer) checkAssertionClaims(c *assertionClaims, now time.Time) error {
	skew := i.cfg.ClockSkew
	if !c.Audience.Contains(i.cfg.Issuer) {
		return fmt.Errorf("%w: assertion aud %q must contain the issuer %q", ErrWrongAudience, []string(c.Audience), i.cfg.Issuer)
	}
	if c.Expiry == nil || c.ID == "" {
		return fmt.Errorf("%w: the assertion needs exp and jti", ErrMissingClaim)
	}
	if len(c.ID) > 256 {
		return fmt.Errorf("%w: jti longer than 256 bytes", ErrMalformed)
	}
	exp := c.Expiry.Time()
	if !now.Before(exp.Add(skew)) {
		return fmt.Errorf("%w: assertion expired at %s", ErrExpired, exp.UTC().Format(time.RFC3339))
	}
	if exp.Sub(now) > MaxAssertionLifetime+skew {
		return fmt.Errorf("%w: assertion exp is %s ahead, the limit is %s", ErrLifetime, exp.Sub(now).Round(time.Second), MaxAssertionLifetime)
	}
	if c.NotBefore != nil && c.NotBefore.Time().After(now.Add(skew)) {
		return fmt.Errorf("%w: assertion nbf is in the future", ErrNotYetValid)
	}
	if c.IssuedAt != nil && c.IssuedAt.Time().After(now.Add(skew)) {
		return fmt.Errorf("%w: assertion iat is in the future", ErrNotYetValid)
	}
	return nil
}
