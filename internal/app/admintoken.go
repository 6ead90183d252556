package app

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/server"
	"github.com/warden-run/warden/internal/store"
)

// AdminTokenFileName is the bootstrap admin token's file in the data directory.
const AdminTokenFileName = "admin.token"

const (
	metaAdminDigest = "bootstrap_admin_sha256"
	adminActor      = "admin:bootstrap"
	adminPrefix     = "wdn_admin_"
)

// bootstrapAdmin makes sure a bootstrap admin credential exists. On the
// first start of a deployment it takes preset (WARDEN_ADMIN_TOKEN) when
// set, or else writes a random token to <data>/admin.token (mode 0600),
// and stores only its SHA-256 digest; later starts, and other replicas,
// accept the same token. It returns the file it wrote, if any.
func bootstrapAdmin(ctx context.Context, ms store.MetaStore, dataDir, preset string, log *slog.Logger) (*server.AdminAuth, string, error) {
	path := filepath.Join(dataDir, AdminTokenFileName)
	written := ""
	stored, err := ms.Meta(ctx, metaAdminDigest)
	switch {
	case errors.Is(err, store.ErrNotFound):
		tok, err := readSecret(path)
		if preset != "" {
			tok, err = preset, nil
		} else if errors.Is(err, fs.ErrNotExist) {
			b := make([]byte, 32)
			rand.Read(b)
			tok = adminPrefix + base64.RawURLEncoding.EncodeToString(b)
			if err := os.MkdirAll(dataDir, 0o700); err != nil {
				return nil, "", fmt.Errorf("admin token: %w", err)
			}
			if err := identity.WriteFileExclusive(path, []byte(tok+"\n"), 0o600); err != nil {
				return nil, "", fmt.Errorf("admin token: %w", err)
			}
			written = path
		} else if err != nil {
			return nil, "", err
		}
		d := sha256.Sum256([]byte(tok))
		put, err := ms.PutMetaIfAbsent(ctx, metaAdminDigest, []byte(hex.EncodeToString(d[:])))
		if err != nil {
			return nil, "", fmt.Errorf("admin token: %w", err)
		}
		if !put && written != "" {
			// Another replica started at the same moment and its token won:
			// the file just written would not work, so it goes.
			os.Remove(written)
			written = ""
		}
		if stored, err = ms.Meta(ctx, metaAdminDigest); err != nil {
			return nil, "", fmt.Errorf("admin token: %w", err)
		}
	case err != nil:
		return nil, "", fmt.Errorf("admin token: %w", err)
	}
	var digest [sha256.Size]byte
	if n, err := hex.Decode(digest[:], []byte(strings.TrimPrefix(string(stored), disabledPrefix))); err != nil || n != sha256.Size {
		return nil, "", errors.New("admin token: the stored digest is corrupt")
	}
	if preset != "" {
		if d := sha256.Sum256([]byte(preset)); subtle.ConstantTimeCompare(d[:], digest[:]) != 1 {
			log.Warn("WARDEN_ADMIN_TOKEN is not this deployment's admin token (rotated, disabled, or another was first); it is ignored")
		}
		return &server.AdminAuth{Source: bootstrap{ms}, Actor: adminActor}, written, nil
	}
	// A local token file that others can read hands them the deployment:
	// refused, as the master key is. One that is not the deployment's
	// token, or cannot be read, is worth a warning.
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, "", fmt.Errorf("admin token file %s is readable by others (mode %04o): whoever reads it administers Warden; run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	switch tok, err := readSecret(path); {
	case err == nil:
		if d := sha256.Sum256([]byte(tok)); subtle.ConstantTimeCompare(d[:], digest[:]) != 1 {
			log.Warn("the admin token file does not hold this deployment's admin token", "path", path)
		}
	case errors.Is(err, fs.ErrNotExist):
		log.Info("no admin token file here; use the token from the replica that first started this deployment", "path", path)
	default:
		log.Warn("admin token file", "err", err)
	}
	return &server.AdminAuth{Source: bootstrap{ms}, Actor: adminActor}, written, nil
}

// bootstrap keeps the bootstrap token's digest in the store, where every
// replica reads it at each admin request: a rotation or a disabling holds
// everywhere at once. A disabled token's digest is kept behind the prefix
// "disabled:".
type bootstrap struct{ ms store.MetaStore }

const disabledPrefix = "disabled:"

var _ server.BootstrapSource = bootstrap{}
var _ server.Access = bootstrap{}

// Bootstrap implements server.BootstrapSource.
func (b bootstrap) Bootstrap(ctx context.Context) ([sha256.Size]byte, bool, error) {
	var d [sha256.Size]byte
	v, err := b.ms.Meta(ctx, metaAdminDigest)
	if err != nil {
		return d, false, err
	}
	if strings.HasPrefix(string(v), disabledPrefix) {
		return d, false, nil
	}
	if n, err := hex.Decode(d[:], v); err != nil || n != sha256.Size {
		return d, false, errors.New("admin token: the stored digest is corrupt")
	}
	return d, true, nil
}

// BootstrapEnabled implements server.Access.
func (b bootstrap) BootstrapEnabled(ctx context.Context) (bool, error) {
	_, enabled, err := b.Bootstrap(ctx)
	return enabled, err
}

// RotateBootstrap implements server.Access: a new token, which also
// enables a disabled bootstrap credential.
func (b bootstrap) RotateBootstrap(ctx context.Context, actor string) (string, error) {
	old, err := b.ms.Meta(ctx, metaAdminDigest)
	if err != nil {
		return "", err
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	tok := adminPrefix + base64.RawURLEncoding.EncodeToString(raw)
	d := sha256.Sum256([]byte(tok))
	ev := store.Event{Time: store.Now(), Actor: actor, Action: "access.bootstrap.rotate", Target: adminActor}
	ok, err := b.ms.SwapMetaWithEvent(ctx, metaAdminDigest, old, []byte(hex.EncodeToString(d[:])), ev)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("admin token: changed meanwhile by another request: %w", store.ErrConflict)
	}
	return tok, nil
}

// DisableBootstrap implements server.Access.
func (b bootstrap) DisableBootstrap(ctx context.Context, actor string) error {
	old, err := b.ms.Meta(ctx, metaAdminDigest)
	if err != nil {
		return err
	}
	if strings.HasPrefix(string(old), disabledPrefix) {
		return nil
	}
	ev := store.Event{Time: store.Now(), Actor: actor, Action: "access.bootstrap.disable", Target: adminActor}
	ok, err := b.ms.SwapMetaWithEvent(ctx, metaAdminDigest, old, append([]byte(disabledPrefix), old...), ev)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("admin token: changed meanwhile by another request: %w", store.ErrConflict)
	}
	return nil
}
