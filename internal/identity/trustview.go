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
// quarantine made by any replica reaches it within moments.
//
// The view knows when it may have missed a change: the feed went down, a
// subscriber fell behind, or a reload failed. From that moment it is
// uncertain; it becomes certain again only after a full reload that began
// later, with the feed up. Uncertain for longer than MaxStaleness, it reports
// itself stale and the verifier refuses every token.
type TrustView struct {
	following    sync.WaitGroup // watchFeed and follow, until the ctx of OpenTrustView ends
	store        trustStore
	log          *slog.Logger
	now          func() time.Time
	maxStaleness time.Duration

	// loadMu serialises loads, so a full reload that read the store before a
	// change cannot overwrite the refresh that read it after.
	loadMu     sync.Mutex
	mu         sync.RWMutex
	agents     map[string]*agentView
	revoked    map[string]time.Time // jti -> when the record may go
	issuerKeys map[string]issuerKeyView
	unknown    map[string]time.Time // agent ids recently looked up and not found
	loaded     atomic.Bool

	uncertainSince atomic.Int64 // unix nanos; 0 while certain
	resync         chan struct{}
}

// storeTimeout bounds every store call the view makes, so a hung database
// turns into an error (and uncertainty) rather than a view that stops moving.
const storeTimeout = 5 * time.Second

// unknownTTL is how long an unknown agent id is answered from memory, so
// that requests naming made-up agents cannot each cost a store read.
const (
	unknownTTL = 2 * time.Second
	maxUnknown = 10_000
)

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

// issuerKeyView is one published issuer key and when it stops being
// accepted, checked at every verification so that a key retired at once is
// refused by every replica as soon as its clock passes that moment.
type issuerKeyView struct {
	pub    ed25519.PublicKey
	retire time.Time // zero: not scheduled
}

// TrustViewConfig configures a TrustView.
type TrustViewConfig struct {
	MaxStaleness time.Duration
	// Resync is how often everything is reloaded regardless of the feed.
	Resync time.Duration
	Logger *slog.Logger
	Now    func() time.Time
}

// ErrStateUnavailable means Warden cannot currently know whether a token or
// agent was revoked, so it refuses rather than guess.
var ErrStateUnavailable = errors.New("revocation state unavailable")

// OpenTrustView loads the whole view and follows changes until ctx ends.
func OpenTrustView(ctx context.Context, cfg TrustViewConfig, st trustStore) (*TrustView, error) {
	if cfg.MaxStaleness <= 0 {
		return nil, errors.New("trust view: MaxStaleness must be positive")
	}
	if cfg.Resync <= 0 {
		cfg.Resync = time.Minute
	}
	v := &TrustView{store: st, log: orDiscard(cfg.Logger), now: orNow(cfg.Now), maxStaleness: cfg.MaxStaleness,
		unknown: make(map[string]time.Time), resync: make(chan struct{}, 1)}
	changes := st.Subscribe(ctx)
	if err := v.ReloadAll(ctx); err != nil {
		return nil, err
	}
	v.following.Go(func() { v.watchFeed(ctx) })
	v.following.Go(func() { v.follow(ctx, changes, cfg.Resync) })
	return v, nil
}

// Wait returns once the view stopped following the store, after the
// context OpenTrustView was given ended.
func (v *TrustView) Wait() { v.following.Wait() }

// markUncertain records that changes may have been missed from t on.
func (v *TrustView) markUncertain(t time.Time) {
	if v.uncertainSince.CompareAndSwap(0, t.UnixNano()) {
		v.log.Warn("trust view uncertain: changes may have been missed; reloading")
	}
	select {
	case v.resync <- struct{}{}:
	default:
	}
}

// watchFeed notices the feed going down. It runs apart from the goroutine
// that loads from the store, so a slow load cannot hide a dead feed.
func (v *TrustView) watchFeed(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if !v.store.FeedHealthy() {
				v.markUncertain(v.now())
			} else if v.uncertainSince.Load() != 0 {
				select {
				case v.resync <- struct{}{}:
				default:
				}
			}
		}
	}
}

func (v *TrustView) follow(ctx context.Context, changes <-chan store.Change, resync time.Duration) {
	full := time.NewTicker(resync)
	defer full.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case c, ok := <-changes:
			if !ok {
				return
			}
			if c.Kind == store.ChangeResync {
				v.markUncertain(v.now())
				v.reload(ctx)
				continue
			}
			if err := v.apply(ctx, c); err != nil && ctx.Err() == nil {
				// What the change carried is not in the view: uncertain until a reload.
				v.log.Error("trust view: applying a change failed", "kind", c.Kind, "err", err)
				v.markUncertain(v.now())
			}
		case <-v.resync:
			v.reload(ctx)
		case <-full.C:
			v.reload(ctx)
		}
	}
}

// reload reloads everything and, if that worked with the feed up, clears an
// uncertainty that began before the reload did.
func (v *TrustView) reload(ctx context.Context) {
	start := v.now()
	feedUp := v.store.FeedHealthy()
	if err := v.ReloadAll(ctx); err != nil {
		if ctx.Err() == nil {
			v.log.Error("trust view: reload failed", "err", err)
			v.markUncertain(start)
		}
		return
	}
	if u := v.uncertainSince.Load(); u != 0 && feedUp && u <= start.UnixNano() {
		if v.uncertainSince.CompareAndSwap(u, 0) {
			v.log.Info("trust view certain again", "was_uncertain_for", start.Sub(time.Unix(0, u)).Round(time.Millisecond))
		}
	}
}

func (v *TrustView) apply(ctx context.Context, c store.Change) error {
	switch c.Kind {
	case store.ChangeAgent:
		return v.RefreshAgent(ctx, c.Key)
	case store.ChangeTokenRevoked:
		// The jti is in the announcement: enforce it before touching the store.
		v.AddRevoked(c.Key, v.now().Add(MaxTokenLifetime+time.Hour))
		return nil
	case store.ChangeSigningKeys:
		return v.RefreshKeys(ctx)
	}
	return nil
}

// ReloadAll reloads the whole view from the store.
func (v *TrustView) ReloadAll(ctx context.Context) error {
	v.loadMu.Lock()
	defer v.loadMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 4*storeTimeout)
	defer cancel()
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
	now := v.now()
	rts, err := v.store.RevokedTokens(ctx, now.Add(-time.Hour))
	if err != nil {
		return fmt.Errorf("trust view: %w", err)
	}
	revoked := make(map[string]time.Time, len(rts))
	for _, rt := range rts {
		revoked[rt.JTI] = rt.ExpiresAt.Add(time.Hour)
	}
	keys, err := v.loadKeys(ctx, now)
	if err != nil {
		return err
	}
	v.mu.Lock()
	// Revocations announced while this load ran are kept: the load may have
	// read the table before they were committed.
	for jti, until := range v.revoked {
		if _, ok := revoked[jti]; !ok && until.After(now) {
			revoked[jti] = until
		}
	}
	v.agents, v.revoked, v.issuerKeys = agents, revoked, keys
	clear(v.unknown)
	v.mu.Unlock()
	v.loaded.Store(true)
	return nil
}

func (v *TrustView) loadKeys(ctx context.Context, now time.Time) (map[string]issuerKeyView, error) {
	sks, err := v.store.SigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("trust view: %w", err)
	}
	keys := make(map[string]issuerKeyView, len(sks))
	for _, sk := range sks {
		if !published(sk, now) {
			continue
		}
		pub, err := ParsePublicJWK(sk.PublicJWK)
		if err != nil || Thumbprint(pub) != sk.KID {
			// An unusable key verifies nothing; the others still work.
			v.log.Error("issuer key unusable; ignored", "kid", sk.KID)
			continue
		}
		keys[sk.KID] = issuerKeyView{pub: pub, retire: sk.RetireAt}
	}
	return keys, nil
}

// RefreshKeys reloads the issuer's published keys. A rotation calls it
// before answering, so that a key retired at once is refused at once here.
func (v *TrustView) RefreshKeys(ctx context.Context) error {
	v.loadMu.Lock()
	defer v.loadMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	keys, err := v.loadKeys(ctx, v.now())
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.issuerKeys = keys
	v.mu.Unlock()
	return nil
}

// RefreshAgent reloads one agent. Writers call it after committing a change
// so that this process refuses a revoked agent's tokens before the change is
// acknowledged, without waiting for the feed. If the store cannot be read,
// the agent is dropped from the view: its tokens are refused until it loads.
func (v *TrustView) RefreshAgent(ctx context.Context, id string) error {
	v.loadMu.Lock()
	defer v.loadMu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	a, err := v.store.Agent(ctx, id)
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.unknown, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		delete(v.agents, id)
		return nil
	case err != nil:
		delete(v.agents, id)
		return fmt.Errorf("%w: agent %s: %v", ErrStateUnavailable, id, err)
	}
	v.agents[id] = viewOf(a, v.log)
	return nil
}

// TokenRevoked says whether the token jti was revoked by its id.
func (v *TrustView) TokenRevoked(jti string) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	_, ok := v.revoked[jti]
	return ok
}

// AddRevoked enforces a token revocation at once, keeping it in memory until
// until (at least the token's expiry plus any clock skew).
func (v *TrustView) AddRevoked(jti string, until time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if cur, ok := v.revoked[jti]; !ok || until.After(cur) {
		v.revoked[jti] = until
	}
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

// lookupAgent returns the current view of one agent. An agent not in the
// view (registered a moment ago through another replica) is read from the
// store; an id found nowhere is remembered briefly as unknown.
func (v *TrustView) lookupAgent(ctx context.Context, id string) (*agentView, error) {
	now := v.now()
	v.mu.RLock()
	a := v.agents[id]
	until, unknown := v.unknown[id]
	v.mu.RUnlock()
	if a != nil {
		return a, nil
	}
	if unknown && now.Before(until) {
		return nil, fmt.Errorf("%w: %s", ErrUnknownAgent, id)
	}
	// Read without loadMu: requests naming unknown agents, which anyone can
	// send, must not hold up the goroutine that applies revocations. The
	// result is only installed where the view has nothing for the agent, so
	// it can never replace a newer refresh.
	rctx, cancel := context.WithTimeout(ctx, storeTimeout)
	rec, err := v.store.Agent(rctx, id)
	cancel()
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: agent %s: %v", ErrStateUnavailable, id, err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if a = v.agents[id]; a != nil {
		return a, nil
	}
	if err == nil {
		a = viewOf(rec, v.log)
		v.agents[id] = a
		return a, nil
	}
	if len(v.unknown) >= maxUnknown {
		clear(v.unknown)
	}
	v.unknown[id] = now.Add(unknownTTL)
	return nil, fmt.Errorf("%w: %s", ErrUnknownAgent, id)
}

// Fresh reports whether the view can be trusted now: loaded, and not
// uncertain for longer than MaxStaleness.
func (v *TrustView) Fresh() error {
	if !v.loaded.Load() {
		return ErrStateUnavailable
	}
	if u := v.uncertainSince.Load(); u != 0 {
		if d := time.Duration(v.now().UnixNano() - u); d > v.maxStaleness {
			return fmt.Errorf("%w: changes may have been missed for %s", ErrStateUnavailable, d.Round(time.Millisecond))
		}
	}
	return nil
}

// Agent returns the view's record of an agent, as of its last load, for
// a decision's input. Its maps and slices are shared: do not modify them.
func (v *TrustView) Agent(id string) (store.Agent, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	a := v.agents[id]
	if a == nil {
		return store.Agent{}, false
	}
	return a.rec, true
}

// Prune forgets revocations of tokens that can no longer verify.
func (v *TrustView) Prune() {
	now := v.now()
	v.mu.Lock()
	defer v.mu.Unlock()
	for jti, until := range v.revoked {
		if until.Before(now) {
			delete(v.revoked, jti)
		}
	}
}

func (v *TrustView) issuerKey(kid string) (ed25519.PublicKey, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	k, ok := v.issuerKeys[kid]
	if !ok || !k.retire.IsZero() && !v.now().Before(k.retire) {
		return nil, false
	}
	return k.pub, true
}
