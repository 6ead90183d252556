package decide

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warden-run/warden/internal/store"
)

// ErrInvalidEnforcementPoint means a registration is malformed.
var ErrInvalidEnforcementPoint = errors.New("invalid enforcement point")

// EnforcementPoints are the registered enforcement points and the
// credentials they authenticate to the decision point with. A credential
// is shown once, when issued; only its SHA-256 is stored. Revocation takes
// effect in this process at once and in the others through the change feed.
type EnforcementPoints struct {
	st    enforcementStore
	lg    *slog.Logger
	now   func() time.Time
	mu    sync.Mutex                          // serialises changes of creds
	creds atomic.Pointer[map[[32]byte]string] // digest -> name, live ones only
}

type enforcementStore interface {
	store.EnforcementPointStore
	store.ChangeFeed
}

// CredentialPrefix starts every enforcement point credential, so that one
// found in a log or a repository is recognised for what it is.
const CredentialPrefix = "wpep_"

var pepName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// OpenEnforcementPoints loads the registered enforcement points and
// follows changes until ctx ends.
func OpenEnforcementPoints(ctx context.Context, st enforcementStore, lg *slog.Logger, now func() time.Time) (*EnforcementPoints, error) {
	e := &EnforcementPoints{st: st, lg: orDiscard(lg), now: orNow(now)}
	changes := st.Subscribe(ctx)
	if err := e.reload(ctx); err != nil {
		return nil, err
	}
	go func() {
		tick := time.NewTicker(30 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case c := <-changes:
				if c.Kind != store.ChangeEnforcementPoints && c.Kind != store.ChangeResync {
					continue
				}
			case <-tick.C:
			}
			if err := e.reload(ctx); err != nil && ctx.Err() == nil {
				e.lg.Error("enforcement points: reload failed", "err", err)
			}
		}
	}()
	return e, nil
}

func (e *EnforcementPoints) reload(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	list, err := e.st.EnforcementPoints(ctx)
	if err != nil {
		return err
	}
	m := make(map[[32]byte]string, len(list))
	for _, p := range list {
		if p.RevokedAt.IsZero() && len(p.CredentialDigest) == 32 {
			m[[32]byte(p.CredentialDigest)] = p.Name
		}
	}
	e.creds.Store(&m)
	return nil
}

// Authenticate returns the name of the enforcement point a credential
// belongs to. The lookup is by the credential's SHA-256, so its time says
// nothing about how close a guess came.
func (e *EnforcementPoints) Authenticate(credential string) (string, bool) {
	if len(credential) != len(CredentialPrefix)+43 {
		return "", false
	}
	name, ok := (*e.creds.Load())[sha256.Sum256([]byte(credential))]
	return name, ok
}

// Register registers an enforcement point and returns its credential,
// which is never shown again.
func (e *EnforcementPoints) Register(ctx context.Context, actor, name, description string) (string, store.EnforcementPoint, error) {
	if !pepName.MatchString(name) {
		return "", store.EnforcementPoint{}, fmt.Errorf("%w: name %q: want 1 to 63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit", ErrInvalidEnforcementPoint, name)
	}
	if len(description) > 256 {
		return "", store.EnforcementPoint{}, fmt.Errorf("%w: description longer than 256 bytes", ErrInvalidEnforcementPoint)
	}
	var secret [32]byte
	rand.Read(secret[:])
	cred := CredentialPrefix + base64.RawURLEncoding.EncodeToString(secret[:])
	digest := sha256.Sum256([]byte(cred))
	now := store.Time(e.now())
	p := store.EnforcementPoint{Name: name, CredentialDigest: digest[:], Description: description, CreatedAt: now, CreatedBy: actor}
	if err := e.st.RegisterEnforcementPoint(ctx, p, pepEvent(now, actor, "enforcement_point.register", name)); err != nil {
		return "", store.EnforcementPoint{}, err
	}
	e.refresh(ctx)
	e.lg.Info("enforcement point registered", "name", name, "actor", actor)
	return cred, p, nil
}

// Revoke revokes an enforcement point's credential.
func (e *EnforcementPoints) Revoke(ctx context.Context, actor, name string) (store.EnforcementPoint, error) {
	now := store.Time(e.now())
	p, err := e.st.RevokeEnforcementPoint(ctx, name, now, pepEvent(now, actor, "enforcement_point.revoke", name))
	if err != nil {
		return p, err
	}
	e.drop(name) // at once, whether or not the reload below works
	e.refresh(ctx)
	e.lg.Info("enforcement point revoked", "name", name, "actor", actor)
	return p, nil
}

// List lists the registered enforcement points, revoked ones included.
func (e *EnforcementPoints) List(ctx context.Context) ([]store.EnforcementPoint, error) {
	return e.st.EnforcementPoints(ctx)
}

// drop stops accepting the credential of the enforcement point name.
func (e *EnforcementPoints) drop(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cur := e.creds.Load()
	next := make(map[[32]byte]string, len(*cur))
	for d, n := range *cur {
		if n != name {
			next[d] = n
		}
	}
	e.creds.Store(&next)
}

// refresh reloads after a change made here, before the caller is
// answered. If it fails, the change is stored and the loop reloads later.
func (e *EnforcementPoints) refresh(ctx context.Context) {
	if err := e.reload(context.WithoutCancel(ctx)); err != nil {
		e.lg.Error("enforcement points: changed, but the local list did not reload", "err", err)
	}
}

func pepEvent(now time.Time, actor, action, name string) store.Event {
	detail, _ := json.Marshal(map[string]any{"name": name})
	return store.Event{Time: now, Actor: actor, Action: action, Target: "pep:" + name, Detail: detail}
}
