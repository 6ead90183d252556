package identity

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/warden-run/warden/internal/store"
)

// Keyring holds the issuer's signing keys: the active private key that signs
// new tokens, and the public keys that are still published because tokens
// they signed may be alive.
type Keyring struct {
	following sync.WaitGroup // follow, until the ctx of OpenKeyring ends
	store     keyringStore
	master    *MasterKey
	log       *slog.Logger
	now       func() time.Time
	// retireAfter is how long a replaced key stays published: the longest
	// token lifetime plus clock skew, so every token it signed expires first.
	retireAfter time.Duration
	skew        time.Duration

	// loadMu serialises reloads, so one that read the store before a
	// rotation cannot install the old key after one that read it after.
	loadMu sync.Mutex
	mu     sync.RWMutex
	signer *issuerKey
	keys   []store.SigningKey
}

type keyringStore interface {
	store.SigningKeyStore
	store.ChangeFeed
}

type issuerKey struct {
	kid    string
	priv   ed25519.PrivateKey
	signer jose.Signer
}

// KeyringConfig configures a Keyring.
type KeyringConfig struct {
	// RetireAfter is how long a replaced key stays in the JWKS.
	RetireAfter time.Duration
	// ClockSkew is how far replicas' clocks may differ.
	ClockSkew time.Duration
	Logger    *slog.Logger
	Now       func() time.Time
}

// OpenKeyring loads the signing keys, creating the first one when the store
// has none, and follows rotations made by other replicas until ctx ends.
func OpenKeyring(ctx context.Context, cfg KeyringConfig, st keyringStore, master *MasterKey) (*Keyring, error) {
	if cfg.RetireAfter <= 0 {
		return nil, errors.New("keyring: RetireAfter must be positive")
	}
	k := &Keyring{store: st, master: master, log: orDiscard(cfg.Logger), now: orNow(cfg.Now), retireAfter: cfg.RetireAfter, skew: cfg.ClockSkew}
	changes := st.Subscribe(ctx)
	if err := k.reload(ctx); err != nil {
		return nil, err
	}
	if k.signer == nil {
		if _, err := k.rotate(ctx, "system:bootstrap", "", k.retireAfter); err != nil && !errors.Is(err, store.ErrConflict) {
			return nil, err
		}
		if err := k.reload(ctx); err != nil {
			return nil, err
		}
		if k.signer == nil {
			return nil, errors.New("keyring: no active signing key after creating one")
		}
	}
	k.following.Go(func() { k.follow(ctx, changes) })
	return k, nil
}

// Wait returns once the keyring stopped following the store, after the
// context OpenKeyring was given ended.
func (k *Keyring) Wait() { k.following.Wait() }

// follow reloads the keys on every announced change, retrying a failed
// reload, and once a minute regardless: a replica must not keep signing with
// a key another one has retired.
func (k *Keyring) follow(ctx context.Context, changes <-chan store.Change) {
	every := time.NewTicker(time.Minute)
	defer every.Stop()
	retry := time.NewTimer(0)
	<-retry.C
	for {
		select {
		case <-ctx.Done():
			return
		case c, ok := <-changes:
			if !ok {
				return
			}
			if c.Kind != store.ChangeSigningKeys && c.Kind != store.ChangeResync {
				continue
			}
		case <-every.C:
		case <-retry.C:
		}
		if err := k.reload(ctx); err != nil && ctx.Err() == nil {
			k.log.Error("reload signing keys; retrying in a second", "err", err)
			retry.Reset(time.Second)
		}
	}
}

func (k *Keyring) reload(ctx context.Context) error {
	k.loadMu.Lock()
	defer k.loadMu.Unlock()
	keys, err := k.store.SigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	var signer *issuerKey
	for _, sk := range keys {
		if !sk.Active {
			continue
		}
		raw, err := k.master.Open(sk.Sealed, sk.KID)
		if err != nil {
			return fmt.Errorf("keyring: signing key %s: %w", sk.KID, err)
		}
		if len(raw) != ed25519.SeedSize {
			return fmt.Errorf("keyring: signing key %s: bad length", sk.KID)
		}
		priv := ed25519.NewKeyFromSeed(raw)
		if Thumbprint(priv.Public().(ed25519.PublicKey)) != sk.KID {
			return fmt.Errorf("keyring: signing key %s does not match its kid", sk.KID)
		}
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: priv},
			(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", sk.KID))
		if err != nil {
			return fmt.Errorf("keyring: %w", err)
		}
		signer = &issuerKey{kid: sk.KID, priv: priv, signer: s}
	}
	k.mu.Lock()
	k.signer, k.keys = signer, keys
	k.mu.Unlock()
	return nil
}

// Rotate makes a new active signing key at once. The key it replaces stays
// published until every token it signed has expired, or, with retireNow
// (keys may be compromised), every older key leaves at once, and with them
// every token signed before now. It returns the new kid.
func (k *Keyring) Rotate(ctx context.Context, actor string, retireNow bool) (string, error) {
	k.mu.RLock()
	prev := ""
	if k.signer != nil {
		prev = k.signer.kid
	}
	k.mu.RUnlock()
	retireAfter := k.retireAfter
	if retireNow {
		// In the past by the clock skew, so that replicas whose clocks run
		// behind refuse the old keys at once too.
		retireAfter = -k.skew
	}
	kid, err := k.rotate(ctx, actor, prev, retireAfter)
	if err != nil {
		return "", err
	}
	return kid, k.reload(ctx)
}

func (k *Keyring) rotate(ctx context.Context, actor, prev string, retireAfter time.Duration) (string, error) {
	pub, priv := GenerateKey()
	kid := Thumbprint(pub)
	now := store.Time(k.now())
	next := store.SigningKey{
		KID:       kid,
		Alg:       string(jose.EdDSA),
		PublicJWK: PublicJWK(pub),
		Sealed:    k.master.Seal(priv.Seed(), kid),
		CreatedAt: now,
	}
	detail, _ := json.Marshal(map[string]any{"kid": kid, "replaces": prev, "previous_retires_at": now.Add(retireAfter)})
	ev := store.Event{Time: now, Actor: actor, Action: "keys.rotate", Target: "issuer", Detail: detail}
	if err := k.store.RotateSigningKey(ctx, prev, next, now.Add(retireAfter), ev); err != nil {
		return "", fmt.Errorf("keyring: rotate: %w", err)
	}
	if prev == "" {
		k.log.Info("issuer signing key created", "kid", kid)
	} else {
		k.log.Info("issuer signing key rotated", "kid", kid, "replaces", prev)
	}
	return kid, nil
}

// Prune deletes keys whose retirement time has passed.
func (k *Keyring) Prune(ctx context.Context) error {
	n, err := k.store.DeleteSigningKeys(ctx, k.now())
	if err != nil {
		return err
	}
	if n > 0 {
		return k.reload(ctx)
	}
	return nil
}

// current returns the active signing key.
func (k *Keyring) current() (*issuerKey, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.signer == nil {
		return nil, errors.New("keyring: no active signing key")
	}
	return k.signer, nil
}

// PublishedKey is one issuer key as shown to operators.
type PublishedKey struct {
	KID       string    `json:"kid"`
	Alg       string    `json:"alg"`
	Active    bool      `json:"active"`
	CreatedAt time.Time `json:"created_at"`
	RetireAt  time.Time `json:"retire_at,omitzero"`
}

// Keys lists the published keys, newest first.
func (k *Keyring) Keys() []PublishedKey {
	now := k.now()
	k.mu.RLock()
	defer k.mu.RUnlock()
	var out []PublishedKey
	for _, sk := range k.keys {
		if published(sk, now) {
			out = append(out, PublishedKey{KID: sk.KID, Alg: sk.Alg, Active: sk.Active, CreatedAt: sk.CreatedAt, RetireAt: sk.RetireAt})
		}
	}
	return out
}

// JWKS returns the JSON Web Key Set of every published key.
func (k *Keyring) JWKS() []byte {
	now := k.now()
	k.mu.RLock()
	defer k.mu.RUnlock()
	set := struct {
		Keys []json.RawMessage `json:"keys"`
	}{Keys: []json.RawMessage{}}
	for _, sk := range k.keys {
		if published(sk, now) {
			set.Keys = append(set.Keys, sk.PublicJWK)
		}
	}
	b, _ := json.Marshal(set)
	return b
}

func published(sk store.SigningKey, now time.Time) bool {
	return sk.Active || sk.RetireAt.IsZero() || now.Before(sk.RetireAt)
}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

func orNow(f func() time.Time) func() time.Time {
	if f == nil {
		return time.Now
	}
	return f
}
