package identity

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/warden-run/warden/internal/store"
)

// MasterKey encrypts issuer signing keys at rest (AES-256-GCM). It lives in
// a 0600 file outside the store, so a copy of the database alone reveals no
// private key. Every replica sharing a store needs the same master key.
type MasterKey struct {
	aead cipher.AEAD
	id   string // a fingerprint of the key, safe to store and show
}

const sealVersion = 1

// LoadOrCreateMasterKey reads the master key file at path, creating it with
// a fresh random key (mode 0600) when it does not exist.
func LoadOrCreateMasterKey(path string) (*MasterKey, bool, error) {
	b, err := os.ReadFile(path)
	created := false
	switch {
	case errors.Is(err, fs.ErrNotExist):
		key := make([]byte, 32)
		rand.Read(key)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, false, fmt.Errorf("master key: %w", err)
		}
		if err := WriteFileExclusive(path, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
			return nil, false, fmt.Errorf("master key: %w", err)
		}
		b, created = []byte(hex.EncodeToString(key)), true
	case err != nil:
		return nil, false, fmt.Errorf("master key: %w", err)
	default:
		if err := checkPrivateFile(path); err != nil {
			return nil, false, fmt.Errorf("master key: %w", err)
		}
	}
	mk, err := ParseMasterKey(string(b))
	if err != nil {
		return nil, false, fmt.Errorf("master key %s: %w", path, err)
	}
	return mk, created, nil
}

// ParseMasterKey reads a master key written as 64 hex digits; the error
// never repeats it.
func ParseMasterKey(s string) (*MasterKey, error) {
	key, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(key) != 32 {
		return nil, errors.New("want 64 hex digits (32 bytes)")
	}
	return NewMasterKey(key)
}

// NewMasterKey wraps a 32-byte key.
func NewMasterKey(key []byte) (*MasterKey, error) {
	if len(key) != 32 {
		return nil, errors.New("master key: want 32 bytes")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	fp := sha256.Sum256(append([]byte("warden master key id\x00"), key...))
	return &MasterKey{aead: aead, id: hex.EncodeToString(fp[:8])}, nil
}

// Seal encrypts plaintext, binding it to label (such as a key id) so a
// sealed value cannot be moved to another record.
func (m *MasterKey) Seal(plaintext []byte, label string) []byte {
	nonce := make([]byte, m.aead.NonceSize())
	rand.Read(nonce)
	out := append([]byte{sealVersion}, nonce...)
	return m.aead.Seal(out, nonce, plaintext, []byte(label))
}

// Open decrypts what Seal made with the same label.
func (m *MasterKey) Open(sealed []byte, label string) ([]byte, error) {
	n := m.aead.NonceSize()
	if len(sealed) < 1+n || sealed[0] != sealVersion {
		return nil, errors.New("sealed value: unknown format")
	}
	p, err := m.aead.Open(nil, sealed[1:1+n], sealed[1+n:], []byte(label))
	if err != nil {
		return nil, errors.New("sealed value: cannot decrypt: wrong master key or tampered data")
	}
	return p, nil
}

const metaMasterKeyID = "master_key_id"

// BindMasterKey records the master key's fingerprint in the store on first
// use, and on every later start refuses a different key, which could not
// decrypt the signing keys.
func BindMasterKey(ctx context.Context, ms store.MetaStore, mk *MasterKey) error {
	if _, err := ms.PutMetaIfAbsent(ctx, metaMasterKeyID, []byte(mk.id)); err != nil {
		return fmt.Errorf("master key: %w", err)
	}
	v, err := ms.Meta(ctx, metaMasterKeyID)
	if err != nil {
		return fmt.Errorf("master key: %w", err)
	}
	if subtle.ConstantTimeCompare(v, []byte(mk.id)) != 1 {
		return fmt.Errorf("master key: this store was set up with another master key (id %s, this one is %s); give every replica the same master key file", v, mk.id)
	}
	return nil
}

// WriteFileExclusive creates path with perm and writes b, failing if the file exists.
func WriteFileExclusive(path string, b []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// checkPrivateFile refuses a secret file that others can read.
func checkPrivateFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is readable by others (mode %04o); run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	return nil
}
