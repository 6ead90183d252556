package identity

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warden-run/warden/internal/store"
)

// TrustView is the token verifier's live, in-memory view of what can change
// a token's validity after it was signed: agent status, agent-wide
// revocations, registered agent keys, revoked token ids and the issuer's
// published keys. It follows the store's change feed, so a revocation or
// quarantine made by any replica reaches it within moments; when the feed is
// down for longer than MaxStaleness it reports itself stale and the verifier
// fails closed.
type TrustView struct {
	store        trustStore
	log          *slog.Logger
	now          func() time.Time
	maxStaleness time.Duration

	// loadMu serialises loads, so a full reload that read the store before a
	// change cannot overwrite the refresh that read it after.
	loadMu      sync.Mutex
	mu          sync.RWMutex
	agents      map[string]*agentView
	revoked     map[string]time.Time // jti -> token expiry
	issuerKeys  map[string]ed25519.PublicKey
	loaded      bool
	feedDownAt  atomic.Int64 // unix nanos when the feed was seen down; 0 while up
	lastRefresh atomic.Int64
}

type trustStore interface {
	Agents(ctx context.Context, f store.AgentFilter) ([]store.Agent, error)
	Agent(ctx context.Context, id string) (store.Agent, error)
	RevokedTokens(ctx context.Context, now time.Time) ([]store.RevokedToken, error)
	SigningKeys(ctx context.Context) ([]store.SigningKey, error)
	store.ChangeFeed
}

// agentView is one agent as verification and authentication need it. It is
// never modified once built; a change replaces it.
type agentView struct {
	rec    store.Agent
	status store.AgentStatus
	// revokedUpTo: tokens with iat at or before this unix second are dead.
	revokedUpTo int64
	keys        map[string]viewKey
}

type viewKey struct {
	pub    ed25519.PublicKey
	retire time.Time // zero: not scheduled
}

func (k viewKey) activeAt(t time.Time) bool { return k.retire.IsZero() || t.Before(k.retire) }

// TrustViewConfig configures a TrustView.
type TrustViewConfig struct {
	MaxStaleness time.Duration
	// Resync is how often everything is reloaded regardless of the feed.
	Resync time.Duration
	Logger *slog.Logger
	Now    func() time.Time
}

// ErrStateUnavailable means the verifier cannot know whether a token was
// revoked, so it refuses it.
var ErrStateUnavailable = errors.New("revocation state unavailable")

// OpenTrustView loads the whole view and follows changes until ctx ends.
func OpenTrustView(ctx context.Context, cfg TrustViewConfig, st trustStore) (*TrustView, error) {
	if cfg.MaxStaleness <= 0 {
		return nil, errors.New("trust view: MaxStaleness must be positive")
	}
	if cfg.Resync <= 0 {
		cfg.Resync = time.Minute
	}
	v := &TrustView{store: st, log: orDiscard(cfg.Logger), now: orNow(cfg.Now), maxStaleness: cfg.MaxStaleness}
	changes := st.Subscribe(ctx)
	if err := v.ReloadAll(ctx); err != nil {
		return nil, err
	}
	go v.follow(ctx, changes, cfg.Resync)
	return v, nil
}

func (v *TrustView) follow(ctx context.Context, changes <-chan store.Change, resync time.Duration) {
	health := time.NewTicker(100 * time.Millisecond)
	defer health.Stop()
	full := time.NewTicker(resync)
	defer full.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			return
		case c, ok := <-changes:
			if !ok {
				return
			}
			err = v.apply(ctx, c)
		case <-health.C:
			up := v.store.FeedHealthy()
			down := v.feedDownAt.Load()
			switch {
			case !up && down == 0:
				v.feedDownAt.Store(v.now().UnixNano())
				v.log.Warn("change feed down: revocations from other replicas are not seen until it is back")
			case up && down != 0:
				// Back: changes may have been missed while it was down.
				if err = v.ReloadAll(ctx); err == nil {
					v.feedDownAt.Store(0)
					v.log.Info("change feed back; state reloaded")
				}
			}
		case <-full.C:
			err = v.ReloadAll(ctx)
		}
		if err != nil && ctx.Err() == nil {
			v.log.Error("trust view: refresh failed", "err", err)
		}
	}
}

func (v *TrustView) apply(ctx context.Context, c store.Change) error {
	switch c.Kind {
	case store.ChangeAgent:
		return v.RefreshAgent(ctx, c.Key)
	case store.ChangeTokenRevoked, store.ChangeSigningKeys:
		// Revocation and key sets are small; reload them whole.
		return v.RefreshRevocations(ctx)
	case store.ChangeResync:
		return v.ReloadAll(ctx)
	}
	return nil
}

// ReloadAll reloads the whole view from the store.
func (v *TrustView) ReloadAll(ctx context.Context) error {
	v.loadMu.Lock()
	defer v.loadMu.Unlock()
	agents := make(map[string]*agentView)
	for after := ""; ; {
		page, err := v.store.Agents(ctx, store.AgentFilter{After: after, Limit: 1000})
		if err != nil {
			return fmt.Errorf("trust view: %w", err)
		}
		for _, a := range page {
			agents[a.ID] = viewOf(a, v.log)
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].ID
	}
	revoked, keys, err := v.loadRevocationsAndKeys(ctx)
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.agents, v.revoked, v.issuerKeys, v.loaded = agents, revoked, keys, true
	v.mu.Unlock()
	v.lastRefresh.Store(v.now().UnixNano())
	return nil
}

func (v *TrustView) loadRevocationsAndKeys(ctx context.Context) (map[string]time.Time, map[string]ed25519.PublicKey, error) {
	now := v.now()
	rts, err := v.store.RevokedTokens(ctx, now.Add(-time.Hour))
	if err != nil {
		return nil, nil, fmt.Errorf("trust view: %w", err)
	}
	revoked := make(map[string]time.Time, len(rts))
	for _, rt := range rts {
		revoked[rt.JTI] = rt.ExpiresAt
	}
	sks, err := v.store.SigningKeys(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("trust view: %w", err)
	}
	keys := make(map[string]ed25519.PublicKey, len(sks))
	for _, sk := range sks {
		if !published(sk, now) {
			continue
		}
		pub, err := ParsePublicJWK(sk.PublicJWK)
		if err != nil {
			return nil, nil, fmt.Errorf("trust view: issuer key %s: %w", sk.KID, err)
		}
		keys[sk.KID] = pub
	}
	return revoked, keys, nil
}

// RefreshAgent reloads one agent. Writers call it after committing a change
// so that this process refuses a revoked agent's tokens before the change is
// acknowledged, without waiting for the feed.
func (v *TrustView) RefreshAgent(ctx context.Context, id string) error {
	v.loadMu.Lock()
	defer v.loadMu.Unlock()
	a, err := v.store.Agent(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		v.mu.Lock()
		delete(v.agents, id)
		v.mu.Unlock()
		return nil
	}
	if err != nil {
		// Unknown state for this agent: forget it, so its tokens are refused
		// until the next successful load.
		v.mu.Lock()
		delete(v.agents, id)
		v.mu.Unlock()
		return fmt.Errorf("trust view: agent %s: %w", id, err)
	}
	v.mu.Lock()
	v.agents[id] = viewOf(a, v.log)
	v.mu.Unlock()
	return nil
}

// RefreshRevocations reloads revoked token ids and issuer keys.
func (v *TrustView) RefreshRevocations(ctx context.Context) error {
	v.loadMu.Lock()
	defer v.loadMu.Unlock()
	revoked, keys, err := v.loadRevocationsAndKeys(ctx)
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.revoked, v.issuerKeys = revoked, keys
	v.mu.Unlock()
	return nil
}

func viewOf(a store.Agent, log *slog.Logger) *agentView {
	av := &agentView{rec: a, status: a.Status, keys: make(map[string]viewKey, len(a.Keys))}
	if !a.TokensRevokedAt.IsZero() {
		av.revokedUpTo = a.TokensRevokedAt.Unix()
	}
	for _, k := range a.Keys {
		pub, err := ParsePublicJWK(k.JWK)
		if err != nil || Thumbprint(pub) != k.KID {
			// A stored key that does not parse or match its kid is left out: it verifies nothing.
			log.Error("agent key unusable; ignored", "agent", a.ID, "kid", k.KID)
			continue
		}
		av.keys[k.KID] = viewKey{pub: pub, retire: k.RetireAt}
	}
	return av
}

// lookupAgent returns the current view of one agent. An agent not yet seen
// (registered a moment ago through another replica) is read from the store.
func (v *TrustView) lookupAgent(ctx context.Context, id string) (*agentView, error) {
	v.mu.RLock()
	a := v.agents[id]
	v.mu.RUnlock()
	if a != nil {
		return a, nil
	}
	if err := v.RefreshAgent(ctx, id); err != nil {
		return nil, err
	}
	v.mu.RLock()
	a = v.agents[id]
	v.mu.RUnlock()
	if a == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownAgent, id)
	}
	return a, nil
}

// Fresh reports whether the view can be trusted now: loaded, and the change
// feed up or down for less than MaxStaleness.
func (v *TrustView) Fresh() error {
	v.mu.RLock()
	loaded := v.loaded
	v.mu.RUnlock()
	if !loaded {
		return ErrStateUnavailable
	}
	if down := v.feedDownAt.Load(); down != 0 && v.now().UnixNano()-down > int64(v.maxStaleness) {
		return fmt.Errorf("%w: change feed down for %s", ErrStateUnavailable, time.Duration(v.now().UnixNano()-down).Round(time.Millisecond))
	}
	return nil
}

func (v *TrustView) issuerKey(kid string) (ed25519.PublicKey, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	k, ok := v.issuerKeys[kid]
	return k, ok
}
