package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// Checkpoint commits to the log at one size: a C2SP tlog-checkpoint body
// (origin line, tree size, base64 root hash), signed as a note.
type Checkpoint struct {
	Origin string
	Size   int64
	Root   []byte
}

// ErrBadCheckpoint is wrapped by every refusal of a checkpoint.
var ErrBadCheckpoint = errors.New("bad checkpoint")

// maxCheckpointSize bounds a signed checkpoint note.
const maxCheckpointSize = 16 << 10

// Body returns the checkpoint's note text.
func (c Checkpoint) Body() string {
	return fmt.Sprintf("%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root))
}

// CheckpointSigner signs checkpoints with the log's Ed25519 key.
type CheckpointSigner struct {
	signer   note.Signer
	verifier note.Verifier
	vkey     string
	origin   string
}

// NewCheckpointKey makes a new signing key for origin, as note keys: the
// secret signer key and the public verifier key ("<origin>+<hash>+<key>").
func NewCheckpointKey(origin string) (skey, vkey string, err error) {
	if err := checkOrigin(origin); err != nil {
		return "", "", err
	}
	return note.GenerateKey(rand.Reader, origin)
}

// NewCheckpointSigner wraps a signer key made by NewCheckpointKey.
func NewCheckpointSigner(skey string) (*CheckpointSigner, error) {
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("checkpoint key: %w", err)
	}
	// The verifier key is derived from the signer key's seed.
	parts := strings.SplitN(skey, "+", 5) // the key data is base64 and may hold "+"
	if len(parts) != 5 {
		return nil, errors.New("checkpoint key: malformed")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return nil, errors.New("checkpoint key: not an Ed25519 note key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(s.Name(), pub)
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, err
	}
	return &CheckpointSigner{signer: s, verifier: v, vkey: vkey, origin: s.Name()}, nil
}

// Origin is the log's name: the first line of every checkpoint.
func (s *CheckpointSigner) Origin() string { return s.origin }

// VerifierKey is the public key that verifies this log's checkpoints, in
// note verifier key form.
func (s *CheckpointSigner) VerifierKey() string { return s.vkey }

// Sign returns the signed note of a checkpoint at size with root.
func (s *CheckpointSigner) Sign(size int64, root []byte) ([]byte, error) {
	c := Checkpoint{Origin: s.origin, Size: size, Root: root}
	return note.Sign(&note.Note{Text: c.Body()}, s.signer)
}

// CheckpointVerifier checks checkpoints of one log.
type CheckpointVerifier struct {
	v      note.Verifier
	origin string
}

// NewCheckpointVerifier parses a verifier key ("<origin>+<hash>+<key>").
func NewCheckpointVerifier(vkey string) (*CheckpointVerifier, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("checkpoint verifier key: %w", err)
	}
	return &CheckpointVerifier{v: v, origin: v.Name()}, nil
}

// Parse verifies a signed checkpoint and returns what it commits to.
func (cv *CheckpointVerifier) Parse(signed []byte) (Checkpoint, error) {
	if len(signed) > maxCheckpointSize {
		return Checkpoint{}, fmt.Errorf("%w: %d bytes", ErrBadCheckpoint, len(signed))
	}
	n, err := note.Open(signed, note.VerifierList(cv.v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: signature: %v", ErrBadCheckpoint, err)
	}
	c, err := ParseCheckpointBody(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != cv.origin {
		return Checkpoint{}, fmt.Errorf("%w: origin %q, want %q", ErrBadCheckpoint, c.Origin, cv.origin)
	}
	return c, nil
}

// ParseCheckpointBody parses the text of a checkpoint note, without
// checking any signature.
func ParseCheckpointBody(text string) (Checkpoint, error) {
	lines := strings.SplitAfter(text, "\n")
	if len(lines) < 4 || !strings.HasSuffix(text, "\n") {
		return Checkpoint{}, fmt.Errorf("%w: want origin, size and root lines", ErrBadCheckpoint)
	}
	origin := strings.TrimSuffix(lines[0], "\n")
	if err := checkOrigin(origin); err != nil {
		return Checkpoint{}, err
	}
	sizeLine := strings.TrimSuffix(lines[1], "\n")
	size, err := strconv.ParseInt(sizeLine, 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != sizeLine {
		return Checkpoint{}, fmt.Errorf("%w: size %q", ErrBadCheckpoint, sizeLine)
	}
	root, err := base64.StdEncoding.Strict().DecodeString(strings.TrimSuffix(lines[2], "\n"))
	if err != nil || len(root) != 32 {
		return Checkpoint{}, fmt.Errorf("%w: root hash is not 32 bytes of base64", ErrBadCheckpoint)
	}
	// Extension lines may follow; an empty one may not. (SplitAfter leaves
	// an empty string after the final newline.)
	for _, l := range lines[3 : len(lines)-1] {
		if l == "\n" {
			return Checkpoint{}, fmt.Errorf("%w: empty extension line", ErrBadCheckpoint)
		}
	}
	return Checkpoint{Origin: origin, Size: size, Root: root}, nil
}

func checkOrigin(origin string) error {
	if origin == "" || strings.ContainsAny(origin, " +\n\t") || !isPrintableASCII(origin) {
		return fmt.Errorf("%w: origin %q: want printable text without spaces or '+'", ErrBadCheckpoint, origin)
	}
	return nil
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// SplitNote returns the text of a signed note, before its blank line.
func SplitNote(signed []byte) (string, bool) {
	i := bytes.Index(signed, []byte("\n\n"))
	if i < 0 {
		return "", false
	}
	return string(signed[:i+1]), true
}
