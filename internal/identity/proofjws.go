package identity

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"filippo.io/edwards25519"

	"github.com/warden-run/warden/internal/wire"
)

// A DPoP proof is a compact JWS of one shape: EdDSA, signed by the Ed25519
// key its header carries. It is read here rather than by go-jose, whose
// general parsing (every algorithm, JSON serialization, key types, its own
// reflection-based JSON) cost about a third of a proof's check, beside the
// signature's verification. What this reader accepts, go-jose accepts too
// and verifies with the same key (FuzzDPoPProof checks it); it is stricter
// where the two could differ: base64url without padding and with its
// unused bits zero, no member named twice or in two cases, no critical
// extensions, no unencoded payload, a public key only.

// proofJWS is a DPoP proof's protected header, its key and its payload,
// its signature verified.
type proofJWS struct {
	header  joseHeader
	key     ed25519.PublicKey
	jkt     string // the key's thumbprint
	payload []byte
	// read is the header as read, for a memo of headers, when it was not
	// found in one: the caller keeps it once the whole proof is accepted.
	read *readHeader
}

var b64 = base64.RawURLEncoding.Strict()

// readProof checks that proof is a compact JWS of type typ (in any case)
// signed with EdDSA by the key in its header, and returns its parts. Its
// header is looked up in seen (nil for none); a header not found there is
// read, and put into it by the caller (keep) only once the proof is
// accepted, so that refused proofs take no room.
func readProof(proof, typ string, seen *headerMemo) (*proofJWS, error) {
	// Base64 decoding skips line breaks: a proof has one spelling.
	if strings.ContainsAny(proof, "\r\n") {
		return nil, fmt.Errorf("%w: a line break in a compact JWS", ErrMalformed)
	}
	h, rest, ok1 := strings.Cut(proof, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || h == "" || p == "" || s == "" || strings.Contains(s, ".") {
		return nil, fmt.Errorf("%w: not a compact JWS (three base64url parts)", ErrMalformed)
	}
	var out proofJWS
	var err error
	if read, ok := seen.get(h, typ); ok {
		out.header, out.key, out.jkt = read.header, read.key, read.jkt
	} else if out.header, out.key, err = readProofHeader(h, typ); err != nil {
		return nil, err
	} else {
		out.jkt = Thumbprint(out.key)
		out.read = &readHeader{encoded: h, typ: typ, header: out.header, key: out.key, jkt: out.jkt}
	}
	sig, err := b64.DecodeString(s)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: signature is not a base64url Ed25519 signature", ErrMalformed)
	}
	if !ed25519.Verify(out.key, []byte(proof[:len(h)+1+len(p)]), sig) {
		return nil, ErrSignature
	}
	if out.payload, err = b64.DecodeString(p); err != nil {
		return nil, fmt.Errorf("%w: payload is not base64url", ErrMalformed)
	}
	return &out, nil
}

// readProofHeader reads a proof's protected header h (base64url): alg
// EdDSA, type typ, no critical or unencoded-payload members, and the
// Ed25519 public key it carries.
func readProofHeader(h, typ string) (joseHeader, ed25519.PublicKey, error) {
	var out proofJWS
	raw, err := b64.DecodeString(h)
	if err != nil {
		return joseHeader{}, nil, fmt.Errorf("%w: header is not base64url", ErrMalformed)
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(raw, &hdr); err != nil || hdr == nil {
		return joseHeader{}, nil, fmt.Errorf("%w: header is not a JSON object", ErrMalformed)
	}
	if err := wire.CheckKeys(raw); err != nil {
		return joseHeader{}, nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if err := stringMember(hdr, "alg", &out.header.Alg); err != nil || out.header.Alg != "EdDSA" {
		return joseHeader{}, nil, fmt.Errorf("%w: %q (want EdDSA)", ErrAlgorithm, out.header.Alg)
	}
	if err := stringMember(hdr, "typ", &out.header.Typ); err != nil || !strings.EqualFold(out.header.Typ, typ) {
		return joseHeader{}, nil, fmt.Errorf("%w: typ %q, want %s", ErrMalformed, out.header.Typ, typ)
	}
	for _, name := range []string{"crit", "b64"} {
		if _, ok := hdr[name]; ok {
			return joseHeader{}, nil, fmt.Errorf("%w: header member %q is not supported", ErrMalformed, name)
		}
	}
	jwk, ok := hdr["jwk"]
	if !ok {
		return joseHeader{}, nil, fmt.Errorf("%w: no jwk in the header", ErrMalformed)
	}
	if out.key, err = proofKey(jwk); err != nil {
		return joseHeader{}, nil, err
	}
	return out.header, out.key, nil
}

// proofKey reads the Ed25519 public key of a proof's header: kty OKP, crv
// Ed25519, x of 32 bytes, and no private part.
func proofKey(raw json.RawMessage) (ed25519.PublicKey, error) {
	var jwk map[string]json.RawMessage
	if err := json.Unmarshal(raw, &jwk); err != nil || jwk == nil {
		return nil, fmt.Errorf("%w: the header jwk is not a JSON object", ErrMalformed)
	}
	if _, ok := jwk["d"]; ok {
		return nil, fmt.Errorf("%w: the header jwk holds a private key", ErrMalformed)
	}
	var kty, crv, x string
	if stringMember(jwk, "kty", &kty) != nil || stringMember(jwk, "crv", &crv) != nil || stringMember(jwk, "x", &x) != nil ||
		kty != "OKP" || crv != "Ed25519" {
		return nil, fmt.Errorf("%w: the header jwk must be an Ed25519 public key", ErrMalformed)
	}
	pub, err := b64.DecodeString(x)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: the header jwk's x is not a base64url Ed25519 public key", ErrMalformed)
	}
	if lowOrder(pub) {
		return nil, fmt.Errorf("%w: the header jwk's x is a low-order point, which verifies signatures nobody made", ErrMalformed)
	}
	return ed25519.PublicKey(pub), nil
}

// lowOrder says whether pub is not a point of the curve, or one that eight
// times itself is the identity: with such a key, a signature of the
// identity's encoding and zero verifies for any message (go-jose refuses
// these keys too, Go's ed25519.Verify does not).
func lowOrder(pub []byte) bool {
	p, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil {
		return true
	}
	return new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1
}

// stringMember sets *v to obj[name] when it is a JSON string, "" when
// absent; any other JSON there is an error.
func stringMember(obj map[string]json.RawMessage, name string, v *string) error {
	raw, ok := obj[name]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s is not a string", name)
	}
	return nil
}

// headerMemo remembers the proof headers read lately, by their encoding. A
// client signs every proof with one key, so each of its proofs carries the
// same header: reading it (base64, JSON, the key's checks, its thumbprint)
// once per client rather than once per proof takes about a fifth off a
// proof's check. Reading a header depends on nothing but its bytes and the
// type asked for; only headers read without fault are kept, and the
// signature is verified on every proof.
type headerMemo struct {
	mu   sync.RWMutex
	m    map[string]readHeader
	size int
}

// readHeader is what a header read without fault gave.
type readHeader struct {
	encoded string // the header's base64url
	typ     string
	header  joseHeader
	key     ed25519.PublicKey
	jkt     string
}

// maxMemoHeader is the longest header kept: an Ed25519 key's header is
// about 150 bytes; longer ones are read every time.
const maxMemoHeader = 512

func newHeaderMemo(size int) *headerMemo {
	return &headerMemo{m: make(map[string]readHeader), size: size}
}

func (c *headerMemo) get(h, typ string) (readHeader, bool) {
	if c == nil {
		return readHeader{}, false
	}
	c.mu.RLock()
	r, ok := c.m[h]
	c.mu.RUnlock()
	return r, ok && r.typ == typ
}

// keep puts the header of an accepted proof (p.read, when it was not
// found) into the memo; when full, an arbitrary header makes room (the
// map's iteration order), so that no sequence of headers pins the memo.
// The header is copied: the proof it is part of is not kept.
func (c *headerMemo) keep(p *proofJWS) {
	if c == nil || p.read == nil || len(p.read.encoded) > maxMemoHeader {
		return
	}
	r := *p.read
	r.encoded = strings.Clone(r.encoded)
	h := r.encoded
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.size {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[h] = r
}
