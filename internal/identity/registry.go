package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/store"
)

// ErrInvalidAgent is wrapped by every refusal of a registration or change
// that is malformed (as opposed to refused for being unknown or conflicting).
var ErrInvalidAgent = errors.New("invalid agent record")

// Registry is the agent registry: registration, status changes, revocation
// and key rotation. Every change is recorded with its actor and time in the
// same transaction, and reaches this process's TrustView before the call returns.
type Registry struct {
	store   registryStore
	view    *TrustView
	domains map[string]DomainPolicy
	grace   time.Duration
	log     *slog.Logger
	now     func() time.Time
}

type registryStore interface {
	store.AgentStore
	store.RevocationStore
}

// RegistryConfig configures a Registry.
type RegistryConfig struct {
	TrustDomains map[string]DomainPolicy
	// KeyGrace is how long a replaced agent key keeps working by default.
	KeyGrace time.Duration
	Logger   *slog.Logger
	Now      func() time.Time
}

// NewRegistry makes a registry over st that keeps view current.
func NewRegistry(cfg RegistryConfig, st registryStore, view *TrustView) (*Registry, error) {
	if len(cfg.TrustDomains) == 0 {
		return nil, errors.New("registry: no trust domains declared")
	}
	return &Registry{store: st, view: view, domains: cfg.TrustDomains, grace: cfg.KeyGrace, log: orDiscard(cfg.Logger), now: orNow(cfg.Now)}, nil
}

// Registration is a new agent.
type Registration struct {
	ID         string            `json:"id"`
	Roles      []string          `json:"roles"`
	Owner      string            `json:"owner"`
	Attributes map[string]string `json:"attributes,omitempty"`
	// PublicKey is the agent's Ed25519 public key as a JWK.
	PublicKey json.RawMessage `json:"public_key"`
}

// Limits on what an agent record may hold.
const (
	maxRoles      = 32
	maxAttributes = 64
	maxNameLen    = 64
	maxValueLen   = 1024
	maxKeys       = 8 // kept per agent, retired ones included
	maxActiveKeys = 3 // usable at once: during rotations
)

// Register adds an agent in status active.
func (r *Registry) Register(ctx context.Context, actor string, reg Registration) (store.Agent, error) {
	id, err := ParseAgentID(reg.ID)
	if err != nil {
		return store.Agent{}, err
	}
	if _, ok := r.domains[id.TrustDomain()]; !ok {
		return store.Agent{}, fmt.Errorf("%w: trust domain %q of %s is not declared in the configuration", ErrUnknownDomain, id.TrustDomain(), id)
	}
	if err := validateRecord(reg.Roles, reg.Owner, reg.Attributes); err != nil {
		return store.Agent{}, err
	}
	for k := range reg.Attributes {
		if ownAttribute(k) {
			return store.Agent{}, fmt.Errorf("%w: attribute %s is Warden's own", ErrInvalidAgent, k)
		}
	}
	if len(reg.PublicKey) == 0 {
		return store.Agent{}, fmt.Errorf("%w: a public key is required", ErrInvalidAgent)
	}
	pub, err := ParsePublicJWK(reg.PublicKey)
	if err != nil {
		return store.Agent{}, err
	}
	now := store.Time(r.now())
	a := store.Agent{
		ID:          id.String(),
		TrustDomain: id.TrustDomain(),
		Roles:       slices.Compact(slices.Sorted(slices.Values(reg.Roles))),
		Owner:       reg.Owner,
		Attributes:  reg.Attributes,
		Status:      store.StatusActive,
		Keys:        []store.AgentKey{{KID: Thumbprint(pub), JWK: PublicJWK(pub), AddedAt: now}},
		CreatedAt:   now,
		UpdatedAt:   now,
	}
	ev := event(now, actor, "agent.register", a.ID, map[string]any{
		"roles": a.Roles, "owner": a.Owner, "attributes": a.Attributes, "kid": a.Keys[0].KID,
	})
	if err := r.store.CreateAgent(ctx, a, ev); err != nil {
		return store.Agent{}, err
	}
	r.refresh(ctx, a.ID)
	r.log.Info("agent registered", "agent", a.ID, "actor", actor, "kid", a.Keys[0].KID)
	return a, nil
}

func validateRecord(roles []string, owner string, attrs map[string]string) error {
	if len(roles) == 0 {
		return fmt.Errorf("%w: at least one role is required", ErrInvalidAgent)
	}
	if len(roles) > maxRoles {
		return fmt.Errorf("%w: %d roles, the limit is %d", ErrInvalidAgent, len(roles), maxRoles)
	}
	for _, role := range roles {
		if !validName(role) {
			return fmt.Errorf("%w: role %q: want 1 to %d of a-z, 0-9, '-', '_', '.', ':'", ErrInvalidAgent, role, maxNameLen)
		}
	}
	if strings.TrimSpace(owner) == "" || len(owner) > maxValueLen || !printable(owner) {
		return fmt.Errorf("%w: owner must be a printable name of 1 to %d bytes", ErrInvalidAgent, maxValueLen)
	}
	if len(attrs) > maxAttributes {
		return fmt.Errorf("%w: %d attributes, the limit is %d", ErrInvalidAgent, len(attrs), maxAttributes)
	}
	for k, v := range attrs {
		if !validName(k) {
			return fmt.Errorf("%w: attribute name %q: want 1 to %d of a-z, 0-9, '-', '_', '.', ':'", ErrInvalidAgent, k, maxNameLen)
		}
		if len(v) > maxValueLen || !printable(v) {
			return fmt.Errorf("%w: attribute %s: value must be printable and at most %d bytes", ErrInvalidAgent, k, maxValueLen)
		}
	}
	for _, p := range delegatePatterns(attrs[AttrDelegateTo]) {
		if err := ValidateAgentPattern(p); err != nil {
			return fmt.Errorf("%w: attribute %s: %w", ErrInvalidAgent, AttrDelegateTo, err)
		}
	}
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

func printable(s string) bool {
	for _, c := range s {
		if !unicode.IsPrint(c) {
			return false
		}
	}
	return true
}

// Agent returns one agent.
func (r *Registry) Agent(ctx context.Context, id string) (store.Agent, error) {
	if _, err := ParseAgentID(id); err != nil {
		return store.Agent{}, err
	}
	return r.store.Agent(ctx, id)
}

// Agents lists agents.
func (r *Registry) Agents(ctx context.Context, f store.AgentFilter) ([]store.Agent, error) {
	if f.Status != "" && !f.Status.Valid() {
		return nil, fmt.Errorf("%w: unknown status %q", ErrInvalidAgent, f.Status)
	}
	return r.store.Agents(ctx, f)
}

// SetStatus moves an agent to status. Disabling or quarantining an agent
// also revokes every token it holds, so that enabling it again later does not
// bring back a token that may have leaked meanwhile.
func (r *Registry) SetStatus(ctx context.Context, actor, id string, status store.AgentStatus, reason string) (store.Agent, error) {
	if !status.Valid() {
		return store.Agent{}, fmt.Errorf("%w: unknown status %q", ErrInvalidAgent, status)
	}
	return r.update(ctx, actor, id, "agent.status", map[string]any{"status": status, "reason": reason}, func(a *store.Agent) error {
		if a.Attributes[AttrDeletedAt] != "" && status != store.StatusDisabled {
			return fmt.Errorf("%w: %s was deleted", store.ErrConflict, a.ID)
		}
		a.Status = status
		if !status.MayHoldTokens() {
			revokeAgentTokens(a)
		}
		if status == store.StatusActive && a.Attributes[AttrStepUpUntil] != "" && actor != audit.ResponseActor {
			// Set active again by a person: trusted again, step-up and all.
			attrs := make(map[string]string, len(a.Attributes))
			for k, v := range a.Attributes {
				if k != AttrStepUpUntil {
					attrs[k] = v
				}
			}
			a.Attributes = attrs
		}
		return nil
	})
}

// AgentUpdate changes an agent's record; what it leaves out stays.
type AgentUpdate struct {
	Roles []string `json:"roles,omitempty"`
	Owner *string  `json:"owner,omitempty"`
	// Attributes sets each named attribute; null removes it. Warden's own
	// (warden.*) cannot be set or removed.
	Attributes map[string]*string `json:"attributes,omitempty"`
	Reason     string             `json:"reason,omitempty"`
}

// AttrDeletedAt marks an agent deleted: when, as RFC 3339.
const AttrDeletedAt = "warden.deleted_at"

// ownAttribute reports whether an attribute is Warden's own.
func ownAttribute(name string) bool { return strings.HasPrefix(name, "warden.") }

// Update changes an agent's roles, owner or attributes, and revokes the
// tokens it holds: they carry the record as it was, and every decision
// after the change sees the new one.
func (r *Registry) Update(ctx context.Context, actor, id string, u AgentUpdate) (store.Agent, error) {
	if u.Roles == nil && u.Owner == nil && len(u.Attributes) == 0 {
		return store.Agent{}, fmt.Errorf("%w: nothing to change: give roles, owner or attributes", ErrInvalidRequest)
	}
	for k := range u.Attributes {
		if ownAttribute(k) {
			return store.Agent{}, fmt.Errorf("%w: attribute %s is Warden's own", ErrInvalidAgent, k)
		}
	}
	detail := map[string]any{"reason": u.Reason}
	if u.Roles != nil {
		detail["roles"] = slices.Compact(slices.Sorted(slices.Values(u.Roles)))
	}
	if u.Owner != nil {
		detail["owner"] = *u.Owner
	}
	if len(u.Attributes) > 0 {
		detail["attributes"] = u.Attributes
	}
	return r.update(ctx, actor, id, "agent.update", detail, func(a *store.Agent) error {
		if a.Attributes[AttrDeletedAt] != "" {
			return fmt.Errorf("%w: %s was deleted", store.ErrConflict, a.ID)
		}
		roles, owner := a.Roles, a.Owner
		if u.Roles != nil {
			roles = slices.Compact(slices.Sorted(slices.Values(u.Roles)))
		}
		if u.Owner != nil {
			owner = *u.Owner
		}
		attrs := make(map[string]string, len(a.Attributes)+len(u.Attributes))
		for k, v := range a.Attributes {
			attrs[k] = v
		}
		for k, v := range u.Attributes {
			if v == nil {
				delete(attrs, k)
			} else {
				attrs[k] = *v
			}
		}
		if err := validateRecord(roles, owner, attrs); err != nil {
			return err
		}
		a.Roles, a.Owner, a.Attributes = roles, owner, attrs
		revokeAgentTokens(a)
		return nil
	})
}

// Delete ends an agent for good: its tokens are revoked, its keys retired
// now, it is disabled and marked deleted (it cannot be enabled, given a
// key or changed again). Its record stays, so that what the audit log says
// of it still names it, and its id is never another agent's.
func (r *Registry) Delete(ctx context.Context, actor, id, reason string) (store.Agent, error) {
	return r.update(ctx, actor, id, "agent.delete", map[string]any{"reason": reason}, func(a *store.Agent) error {
		if a.Attributes[AttrDeletedAt] != "" {
			return fmt.Errorf("%w: %s was deleted", store.ErrConflict, a.ID)
		}
		a.Status = store.StatusDisabled
		revokeAgentTokens(a)
		for i, k := range a.Keys {
			if k.RetireAt.IsZero() || k.RetireAt.After(a.UpdatedAt) {
				a.Keys[i].RetireAt = a.UpdatedAt
			}
		}
		attrs := make(map[string]string, len(a.Attributes)+1)
		for k, v := range a.Attributes {
			attrs[k] = v
		}
		attrs[AttrDeletedAt] = a.UpdatedAt.UTC().Format(time.RFC3339)
		a.Attributes = attrs
		return nil
	})
}

// RevokeTokens kills every token the agent holds now. The agent may obtain
// new tokens unless it is also disabled or quarantined.
func (r *Registry) RevokeTokens(ctx context.Context, actor, id, reason string) (store.Agent, error) {
	return r.update(ctx, actor, id, "agent.revoke", map[string]any{"reason": reason}, func(a *store.Agent) error {
		revokeAgentTokens(a)
		return nil
	})
}

// RevocationMargin widens an agent-wide revocation past the moment it is
// made, to cover tokens issued at the same time by a replica whose clock runs
// slightly ahead. New tokens for the agent wait until the margin has passed.
const RevocationMargin = time.Second

// revokeAgentTokens revokes every token of a issued up to now plus the
// margin. The mark never moves back.
func revokeAgentTokens(a *store.Agent) {
	if t := a.UpdatedAt.Add(RevocationMargin); t.After(a.TokensRevokedAt) {
		a.TokensRevokedAt = t
	}
}

// RotateKey registers a new public key for the agent. Its other keys stay
// valid for grace (the configured default when negative) and are then
// refused, with every token bound to them.
func (r *Registry) RotateKey(ctx context.Context, actor, id string, jwk []byte, grace time.Duration) (store.Agent, error) {
	pub, err := ParsePublicJWK(jwk)
	if err != nil {
		return store.Agent{}, err
	}
	if grace < 0 {
		grace = r.grace
	}
	kid := Thumbprint(pub)
	return r.update(ctx, actor, id, "agent.rotate_key", map[string]any{"kid": kid, "grace": grace.String()}, func(a *store.Agent) error {
		if a.Attributes[AttrDeletedAt] != "" {
			return fmt.Errorf("%w: %s was deleted", store.ErrConflict, a.ID)
		}
		retire := a.UpdatedAt.Add(grace)
		for i, k := range a.Keys {
			if k.KID == kid {
				return fmt.Errorf("%w: key %s is already registered for %s", store.ErrConflict, kid, a.ID)
			}
			if k.ActiveAt(a.UpdatedAt) && (k.RetireAt.IsZero() || k.RetireAt.After(retire)) {
				a.Keys[i].RetireAt = retire
			}
		}
		a.Keys = append(a.Keys, store.AgentKey{KID: kid, JWK: PublicJWK(pub), AddedAt: a.UpdatedAt})
		active := 0
		for _, k := range a.Keys {
			if k.ActiveAt(a.UpdatedAt) {
				active++
			}
		}
		if active > maxActiveKeys {
			return fmt.Errorf("%w: %s would have %d keys in use, the limit is %d; rotate with a shorter grace (0s retires the others now)",
				ErrInvalidAgent, a.ID, active, maxActiveKeys)
		}
		// Forget the oldest retired keys beyond the limit.
		for len(a.Keys) > maxKeys {
			i := slices.IndexFunc(a.Keys, func(k store.AgentKey) bool { return !k.ActiveAt(a.UpdatedAt) })
			a.Keys = slices.Delete(a.Keys, i, i+1)
		}
		return nil
	})
}

// RevokeToken revokes one token by its jti. exp, when known, lets the record
// go once the token has expired; otherwise it is kept for the longest lifetime.
func (r *Registry) RevokeToken(ctx context.Context, actor, jti, agentID string, exp time.Time, reason string) error {
	if jti == "" || len(jti) > 256 {
		return fmt.Errorf("%w: jti must be 1 to 256 bytes", ErrInvalidRequest)
	}
	if agentID != "" {
		if _, err := ParseAgentID(agentID); err != nil {
			return err
		}
	}
	now := store.Time(r.now())
	if exp.IsZero() || exp.After(now.Add(MaxTokenLifetime)) {
		exp = now.Add(MaxTokenLifetime)
	}
	rt := store.RevokedToken{JTI: jti, AgentID: agentID, ExpiresAt: store.Time(exp), RevokedAt: now}
	ev := event(now, actor, "token.revoke", jti, map[string]any{"agent": agentID, "reason": reason})
	if err := r.store.RevokeToken(ctx, rt, ev); err != nil {
		return err
	}
	// Enforced here at once, whatever the feed does; kept past the token's
	// expiry plus any clock skew.
	r.view.AddRevoked(jti, exp.Add(time.Hour))
	r.log.Info("token revoked", "jti", jti, "agent", agentID, "actor", actor)
	return nil
}

func (r *Registry) update(ctx context.Context, actor, id, action string, detail map[string]any, fn func(*store.Agent) error) (store.Agent, error) {
	if _, err := ParseAgentID(id); err != nil {
		return store.Agent{}, err
	}
	now := store.Time(r.now())
	a, err := r.store.UpdateAgent(ctx, id, event(now, actor, action, id, detail), func(a *store.Agent) error {
		a.UpdatedAt = now
		return fn(a)
	})
	if err != nil {
		return store.Agent{}, err
	}
	r.refresh(ctx, id)
	r.log.Info("agent changed", "agent", id, "action", action, "actor", actor)
	return a, nil
}

// refresh brings this process's view up to date before the caller is
// answered; a caller that goes away meanwhile does not cut it short.
func (r *Registry) refresh(ctx context.Context, id string) {
	if err := r.view.RefreshAgent(context.WithoutCancel(ctx), id); err != nil {
		// RefreshAgent has dropped the agent from the view: its tokens are refused until it reloads.
		r.log.Error("agent change stored but the local view did not reload; its tokens are refused until it does", "agent", id, "err", err)
	}
}

func event(now time.Time, actor, action, target string, detail map[string]any) store.Event {
	b, _ := json.Marshal(detail)
	return store.Event{Time: now, Actor: actor, Action: action, Target: target, Detail: b}
}
