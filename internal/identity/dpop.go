package identity

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/warden-run/warden/internal/jsonscan"
)

// DPoPConfig configures a DPoPVerifier.
type DPoPConfig struct {
	// MaxAge is how old a proof's iat may be. Default 60s.
	MaxAge time.Duration
	// ClockSkew is how far in the future iat may be; negative means the
	// default of 5s, zero means none.
	ClockSkew time.Duration
	// ReplayCacheSize bounds the remembered proof ids, for every key
	// together; a proof that finds no room is refused
	// (ErrReplayCacheIsFull). Default DefaultReplayCapacity.
	ReplayCacheSize int
	// ProofsPerKey bounds the proofs one key may have accepted: past it a
	// proof is refused with ErrProofRateExceeded, so that no key can fill
	// the replay memory for the others. Default DefaultProofsPerKey.
	ProofsPerKey Rate
	Logger       *slog.Logger
	Now          func() time.Time
}

// Defaults of DPoPConfig. A proof is remembered for MaxAge + 2 x ClockSkew
// (120 s with the server's default skew of 30 s), and counted up to a
// window of the memory (8 s) longer; one key at DefaultProofsPerKey then
// counts for at most 1,290,000 of the DefaultReplayCapacity, under a
// third, and one agent at the MCP gateway's whole measured throughput
// (1,300 calls a second on two cores) about 168,000. Filling it takes four keys at their ceiling, 40,000 proof
// checks a second: more than two cores can verify (about 28,000).
const DefaultReplayCapacity = 4_000_000

// DefaultProofsPerKey is the default ProofsPerKey.
var DefaultProofsPerKey = Rate{PerSecond: 10_000, Burst: 10_000}

// DPoPVerifier checks RFC 9449 proofs of possession: a fresh JWT, signed by
// the key the access token is bound to, naming this very request, used once.
type DPoPVerifier struct {
	maxAge, skew time.Duration
	now          func() time.Time
	replay       *ReplayCache
	perKey       *keyedLimiter
	keyHash      keyHasher
	refusals     *sampledLog
	headers      *headerMemo
	rateRefused  atomic.Uint64
}

// DPoPStats describe a DPoPVerifier's replay memory and refusals.
type DPoPStats struct {
	// Remembered is how many proof ids are held now, Capacity the most.
	Remembered, Capacity int
	// RefusedFull counts proofs refused because the replay memory was
	// full, RefusedRate those refused by the per-key rate.
	RefusedFull, RefusedRate uint64
}

// DPoPCheck is what a proof must match.
type DPoPCheck struct {
	// Method and URL are the request's HTTP method and target URI.
	Method string
	URL    string
	// AccessToken, when set, must be hashed in the proof's ath claim.
	AccessToken string
	// JKT, when set, must equal the proof key's thumbprint (the token's cnf.jkt).
	JKT string
}

// DPoPProof is a verified proof.
type DPoPProof struct {
	JKT      string
	ID       string
	IssuedAt time.Time
	Key      ed25519.PublicKey
}

const maxProofLen = 8 << 10

// proofHeaderMemo is how many proof headers (clients' keys) a verifier
// keeps read: with headers of 512 bytes at most, under 1 MB.
const proofHeaderMemo = 1024

// NewDPoPVerifier makes a verifier with its own replay memory.
func NewDPoPVerifier(cfg DPoPConfig) *DPoPVerifier {
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 60 * time.Second
	}
	if cfg.ClockSkew < 0 {
		cfg.ClockSkew = 5 * time.Second
	}
	if cfg.ReplayCacheSize <= 0 {
		cfg.ReplayCacheSize = DefaultReplayCapacity
	}
	if !cfg.ProofsPerKey.valid() {
		cfg.ProofsPerKey = DefaultProofsPerKey
	}
	return &DPoPVerifier{maxAge: cfg.MaxAge, skew: cfg.ClockSkew, now: orNow(cfg.Now),
		replay: NewReplayCache(cfg.ReplayCacheSize), perKey: newKeyedLimiter(cfg.ProofsPerKey, 1<<16), keyHash: newKeyHasher(),
		refusals: newSampledLog(orDiscard(cfg.Logger), "DPoP proof refused", 10*time.Second, 5),
		headers:  newHeaderMemo(proofHeaderMemo)}
}

// Stats returns the verifier's figures.
func (d *DPoPVerifier) Stats() DPoPStats {
	r := d.replay.Stats()
	return DPoPStats{Remembered: r.Remembered, Capacity: r.Capacity, RefusedFull: r.RefusedFull, RefusedRate: d.rateRefused.Load()}
}

type dpopClaims struct {
	JTI   string          `json:"jti"`
	HTM   string          `json:"htm"`
	HTU   string          `json:"htu"`
	IAT   json.Number     `json:"iat"`
	ATH   string          `json:"ath"`
	Nonce json.RawMessage `json:"nonce"`
}

// readClaims reads a proof's claims in one pass (jsonscan), or, where the
// scanner gives up, as json.Decoder reads them.
func readClaims(payload []byte) (dpopClaims, error) {
	if cl, err := scanClaims(payload); err == nil {
		return cl, nil
	}
	var cl dpopClaims
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	return cl, dec.Decode(&cl)
}

// scanClaims is readClaims' one pass; it gives up (jsonscan.ErrGiveUp)
// where json.Decoder might read the claims otherwise.
func scanClaims(payload []byte) (dpopClaims, error) {
	var cl dpopClaims
	s := jsonscan.New(payload)
	err := s.Fields([]string{"jti", "htm", "htu", "iat", "ath", "nonce"}, func(i int) (err error) {
		switch i {
		case 0:
			cl.JTI, err = s.Str()
		case 1:
			cl.HTM, err = s.Str()
		case 2:
			cl.HTU, err = s.Str()
		case 3:
			if c := s.Next(); c != '-' && (c < '0' || c > '9') {
				return jsonscan.ErrGiveUp
			}
			var n []byte
			n, err = s.Raw()
			cl.IAT = json.Number(n)
		case 4:
			cl.ATH, err = s.Str()
		default:
			cl.Nonce, err = s.Raw()
		}
		return err
	})
	if err != nil || !s.End() {
		return dpopClaims{}, jsonscan.ErrGiveUp
	}
	return cl, nil
}

// Verify checks proof against c and records its id, so the same proof is
// refused next time. A refused proof is not recorded.
func (d *DPoPVerifier) Verify(proof string, c DPoPCheck) (*DPoPProof, error) {
	p, err := d.check(proof, c)
	if err != nil {
		return nil, err
	}
	if err := d.record(p); err != nil {
		return nil, err
	}
	return p, nil
}

// record spends a verified proof: within its key's rate, and never seen.
func (d *DPoPVerifier) record(p *DPoPProof) error {
	now := d.now()
	// A replay is refused before it costs the key anything: a captured
	// proof replayed must not spend its owner's rate.
	if d.replay.Held(p.JKT, p.ID, now) {
		return fmt.Errorf("%w: proof %w", ErrDPoP, ErrReplay)
	}
	if ok, _, wait := d.perKey.take(d.keyHash.string(p.JKT), now); !ok {
		d.rateRefused.Add(1)
		d.refusals.Log(now, slog.LevelWarn, "proof_rate_exceeded", "jkt", p.JKT)
		return &RateLimitError{Err: ErrProofRateExceeded, Limit: "identity.dpop.proofs_per_key", RetryAfter: wait}
	}
	exp := p.IssuedAt.Add(d.maxAge + 2*d.skew)
	if err := d.replay.UseFor(p.JKT, p.ID, exp, now); err != nil {
		if errors.Is(err, ErrReplayCacheIsFull) {
			d.refusals.Log(now, slog.LevelError, "replay_memory_full", "capacity", d.replay.capacity)
		}
		return fmt.Errorf("%w: proof %w", ErrDPoP, err)
	}
	return nil
}

func (d *DPoPVerifier) check(proof string, c DPoPCheck) (*DPoPProof, error) {
	if len(proof) > maxProofLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrDPoP, maxProofLen)
	}
	jws, err := readProof(proof, "dpop+jwt", d.headers)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDPoP, err)
	}
	pub, payload := jws.key, jws.payload
	cl, err := readClaims(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: claims are not a JSON object", ErrDPoP)
	}
	jkt := jws.jkt
	if c.JKT != "" && subtle.ConstantTimeCompare([]byte(jkt), []byte(c.JKT)) != 1 {
		return nil, ErrDPoPKeyMismatch
	}
	if cl.JTI == "" || len(cl.JTI) > 256 {
		return nil, fmt.Errorf("%w: jti missing or longer than 256 bytes", ErrDPoP)
	}
	if cl.HTM != c.Method {
		return nil, fmt.Errorf("%w: htm %q does not match the request method %q", ErrDPoP, cl.HTM, c.Method)
	}
	if !sameTargetURI(cl.HTU, c.URL) {
		return nil, fmt.Errorf("%w: htu %q does not match the request URI", ErrDPoP, cl.HTU)
	}
	iatSec, err := cl.IAT.Int64()
	if err != nil {
		return nil, fmt.Errorf("%w: iat missing or not an integer", ErrDPoP)
	}
	iat := time.Unix(iatSec, 0)
	now := d.now()
	if iat.After(now.Add(d.skew)) {
		return nil, fmt.Errorf("%w: %w: iat is %s in the future", ErrDPoP, ErrNotYetValid, iat.Sub(now).Round(time.Second))
	}
	if now.Sub(iat) > d.maxAge {
		return nil, fmt.Errorf("%w: %w: issued %s ago, the limit is %s", ErrDPoP, ErrExpired, now.Sub(iat).Round(time.Second), d.maxAge)
	}
	if c.AccessToken != "" {
		if subtle.ConstantTimeCompare([]byte(cl.ATH), []byte(AccessTokenHash(c.AccessToken))) != 1 {
			return nil, fmt.Errorf("%w: ath does not hash the presented access token", ErrDPoP)
		}
	}
	d.headers.keep(jws)
	return &DPoPProof{JKT: jkt, ID: cl.JTI, IssuedAt: iat, Key: pub}, nil
}

// AccessTokenHash is the ath of a DPoP proof: base64url(SHA-256(token)).
func AccessTokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// sameTargetURI compares a proof's htu with the request URI as RFC 9449
// asks: without query and fragment, after syntax- and scheme-based
// normalisation (case of scheme and host, default ports, empty path).
func sameTargetURI(htu, reqURL string) bool {
	a, err1 := url.Parse(htu)
	b, err2 := url.Parse(reqURL)
	if err1 != nil || err2 != nil || a.Scheme == "" || a.Host == "" || a.User != nil {
		return false
	}
	return normalURI(a) == normalURI(b)
}

func normalURI(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path
}

type joseHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid"`
}

// peekHeader decodes the protected header of a compact JWS without trusting
// it, to say precisely why a token is refused before verifying it.
func peekHeader(compact string) (joseHeader, error) {
	var h joseHeader
	dot := strings.IndexByte(compact, '.')
	if dot <= 0 || strings.Count(compact, ".") != 2 {
		return h, fmt.Errorf("%w: not a compact JWS (three base64url parts)", ErrMalformed)
	}
	raw, err := base64.RawURLEncoding.DecodeString(compact[:dot])
	if err != nil {
		return h, fmt.Errorf("%w: header is not base64url", ErrMalformed)
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return h, fmt.Errorf("%w: header is not a JSON object", ErrMalformed)
	}
	return h, nil
}
