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

// ErrClientAuthMethod: the client authenticated otherwise than by a
// private_key_jwt assertion (a client secret in an Authorization header).
var ErrClientAuthMethod = fmt.Errorf("%w: only private_key_jwt is supported", errClientAuth)

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
// this issuer, short-lived and never seen before. It does not record the
// jti; consume does, once the whole request has passed, within the agent's
// rate of requests.
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
	if strings.EqualFold(hdr.Typ, "at+jwt") || strings.EqualFold(hdr.Typ, "dpop+jwt") || strings.EqualFold(hdr.Typ, StatementTypeApproval) || strings.EqualFold(hdr.Typ, StatementTypeGrant) {
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
	if req.attempt != nil {
		req.attempt.claimed = c.Subject
		if err := i.brake.admitAgent(&req.attempt.brake, c.Subject, i.now()); err != nil {
			return nil, err
		}
	}
	id, err := ParseAgentID(c.Subject)
	if err != nil {
		return nil, err
	}
	av, kid, err := i.assertionKey(ctx, id, hdr.Kid, jws)
	if err != nil {
		return nil, err
	}
	now := i.now()
	if err := i.checkAssertionClaims(&c, now); err != nil {
		return nil, err
	}
	return &client{id: id, agent: av.rec, kid: kid, jti: c.ID, exp: c.Expiry.Time()}, nil
}

// assertionKey finds the agent and the key that verifies its assertion.
// Whatever the agent (unknown, inactive, in an undeclared trust domain, or
// named with a kid that is not one of its active keys), the assertion goes
// through a signature check, against a decoy key when there is no key to
// check it with: a refusal takes the same time whether the agent exists or
// not.
func (i *TokenIssuer) assertionKey(ctx context.Context, id AgentID, hdrKid string, jws *jose.JSONWebSignature) (*agentView, string, error) {
	view := i.verifier.view
	if err := view.Fresh(); err != nil {
		return nil, "", err
	}
	av, refusal := i.authenticatingAgent(ctx, id)
	if refusal != nil && !errors.Is(refusal, ErrUnknownAgent) && !errors.Is(refusal, ErrAgentInactive) && !errors.Is(refusal, ErrUnknownDomain) {
		return nil, "", refusal // the view could not say: not the client's fault
	}
	now := i.now()
	checked := false
	if refusal == nil && hdrKid != "" {
		k, ok := av.keys[hdrKid]
		if ok && k.activeAt(now) {
			if i.verifySignature(jws, k.pub) {
				return av, hdrKid, nil
			}
			return nil, "", fmt.Errorf("%w: assertion of %s", ErrSignature, id)
		}
		refusal = fmt.Errorf("%w: kid %q is not an active key of %s", ErrKeyNotBound, hdrKid, id)
	}
	if refusal == nil {
		for k, key := range av.keys {
			if key.activeAt(now) {
				checked = true
				if i.verifySignature(jws, key.pub) {
					return av, k, nil
				}
			}
		}
		refusal = fmt.Errorf("%w: no active key of %s verifies the assertion", ErrSignature, id)
	}
	if !checked {
		i.verifySignature(jws, i.decoyKey) // the same work as a known agent's refusal
	}
	return nil, "", refusal
}

// authenticatingAgent is the agent an assertion names, if it may
// authenticate.
func (i *TokenIssuer) authenticatingAgent(ctx context.Context, id AgentID) (*agentView, error) {
	if _, ok := i.cfg.TrustDomains[id.TrustDomain()]; !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownDomain, id.TrustDomain())
	}
	av, err := i.verifier.view.lookupAgent(ctx, id.String())
	if err != nil {
		return nil, err
	}
	if !av.status.MayHoldTokens() {
		return nil, fmt.Errorf("%w: %s is %s", ErrAgentInactive, id, av.status)
	}
	return av, nil
}

func (i *TokenIssuer) checkAssertionClaims(c *assertionClaims, now time.Time) error {
	return i.checkClaims(c, i.cfg.Issuer, now)
}

// checkClaims checks an assertion's or a statement's claims: addressed to
// aud, with exp (not far ahead) and jti, valid now.
func (i *TokenIssuer) checkClaims(c *assertionClaims, aud string, now time.Time) error {
	skew := i.cfg.ClockSkew
	if !c.Audience.Contains(aud) {
		return fmt.Errorf("%w: aud %q must contain %q", ErrWrongAudience, []string(c.Audience), aud)
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
