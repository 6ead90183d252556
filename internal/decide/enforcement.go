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
	following sync.WaitGroup // until the ctx of OpenEnforcementPoints ends
	st        enforcementStore
	lg        *slog.Logger
	now       func() time.Time
	mu        sync.Mutex                         // serialises changes of creds
	creds     atomic.Pointer[map[[32]byte]Point] // digest -> point, live ones only
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
	e.warnUnset()
	e.following.Go(func() {
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
	})
	return e, nil
}

// Wait returns once the enforcement points stopped following the store,
// after the context OpenEnforcementPoints was given ended.
func (e *EnforcementPoints) Wait() { e.following.Wait() }

func (e *EnforcementPoints) reload(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	list, err := e.st.EnforcementPoints(ctx)
	if err != nil {
		return err
	}
	m := make(map[[32]byte]Point, len(list))
	for _, p := range list {
		if p.RevokedAt.IsZero() && len(p.CredentialDigest) == 32 {
			m[[32]byte(p.CredentialDigest)] = pointOf(p)
		}
	}
	e.creds.Store(&m)
	return nil
}

// pointOf is how the pipeline treats a registered enforcement point. Trust
// names it does not know (written by a newer version) count for nothing.
func pointOf(p store.EnforcementPoint) Point {
	pt := Point{Name: p.Name}
	for _, n := range p.Trust {
		if t, err := ParseTrust([]string{n}); err == nil {
			pt.Trust |= t
		}
	}
	switch {
	case p.Audience != "":
		pt.Audiences = []string{p.Audience}
	case p.NoAudience:
		pt.Unbound = UnboundDeliberately
	default:
		pt.Unbound = UnboundLegacy
	}
	return pt
}

// warnUnset reports the live enforcement points registered before
// enforcement points had audiences: their decisions check none.
func (e *EnforcementPoints) warnUnset() {
	for _, p := range *e.creds.Load() {
		if p.Unbound == UnboundLegacy {
			e.lg.Warn("enforcement point registered without an audience: its decisions accept a token issued for any resource; register it again with --audience (or --no-audience)",
				"name", p.Name)
		}
	}
}

// Authenticate returns the enforcement point a credential belongs to. The
// lookup is by the credential's SHA-256, so its time says nothing about
// how close a guess came.
func (e *EnforcementPoints) Authenticate(credential string) (Point, bool) {
	if len(credential) != len(CredentialPrefix)+43 {
		return Point{}, false
	}
	p, ok := (*e.creds.Load())[sha256.Sum256([]byte(credential))]
	return p, ok
}

// Registration is what an enforcement point is registered with.
type Registration struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Audience is the resource the point serves, as the tokens agents
	// present to it name it (aud): its URL, or the configured audience
	// (identity.audience) for a point whose agents get tokens for Warden
	// itself. Required unless NoAudience.
	Audience   string `json:"audience"`
	NoAudience bool   `json:"no_audience"`
	// Trust names the context fields the point is believed on (ParseTrust);
	// none when empty.
	Trust []string `json:"trust"`
}

func (r Registration) check() (Trust, error) {
	switch {
	case !pepName.MatchString(r.Name):
		return 0, fmt.Errorf("%w: name %q: want 1 to 63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit", ErrInvalidEnforcementPoint, r.Name)
	case len(r.Description) > 256:
		return 0, fmt.Errorf("%w: description longer than 256 bytes", ErrInvalidEnforcementPoint)
	case r.Audience == "" && !r.NoAudience:
		return 0, fmt.Errorf("%w: audience: required, the resource the enforcement point serves (the aud of the tokens agents present to it); or no_audience, to accept a token issued for any resource", ErrInvalidEnforcementPoint)
	case r.Audience != "" && r.NoAudience:
		return 0, fmt.Errorf("%w: audience and no_audience: one or the other", ErrInvalidEnforcementPoint)
	case r.Audience != "" && !validAudience(r.Audience):
		return 0, fmt.Errorf("%w: audience: 1 to 1024 bytes without spaces or control characters, such as https://gw.example/mcp", ErrInvalidEnforcementPoint)
	}
	return ParseTrust(r.Trust)
}

// Register registers an enforcement point and returns its credential,
// which is never shown again.
func (e *EnforcementPoints) Register(ctx context.Context, actor string, r Registration) (string, store.EnforcementPoint, error) {
	trust, err := r.check()
	if err != nil {
		return "", store.EnforcementPoint{}, err
	}
	var secret [32]byte
	rand.Read(secret[:])
	cred := CredentialPrefix + base64.RawURLEncoding.EncodeToString(secret[:])
	digest := sha256.Sum256([]byte(cred))
	now := store.Time(e.now())
	p := store.EnforcementPoint{Name: r.Name, CredentialDigest: digest[:], Description: r.Description, Audience: r.Audience,
		NoAudience: r.NoAudience, Trust: trust.Names(), CreatedAt: now, CreatedBy: actor}
	ev := pepEvent(now, actor, "enforcement_point.register", r.Name)
	ev.Detail, _ = json.Marshal(map[string]any{"name": r.Name, "audience": r.Audience, "no_audience": r.NoAudience, "trust": p.Trust})
	if err := e.st.RegisterEnforcementPoint(ctx, p, ev); err != nil {
		return "", store.EnforcementPoint{}, err
	}
	e.refresh(ctx)
	e.lg.Info("enforcement point registered", "name", r.Name, "actor", actor, "audience", r.Audience, "trust", p.Trust)
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
	next := make(map[[32]byte]Point, len(*cur))
	for d, p := range *cur {
		if p.Name != name {
			next[d] = p
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
