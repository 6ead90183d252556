// Package record makes the copy of a decision's policy input that its audit
// entry keeps, and the digest of that copy: secrets redacted (at configured
// paths, and under secret-looking keys anywhere in the arguments), large
// values replaced by their size and SHA-256, the whole under a size cap.
//
// The digest is taken of the recorded copy, never of the input policy saw:
// the audit log goes to every SIEM, and a digest of an input holding a short
// secret gives the secret back to anyone who guesses it offline.
package record

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/warden-run/warden/internal/audit"
)

// Redacted stands in the record for a value that is not recorded.
const Redacted = "[redacted]"

// OmittedPrefix starts the string that stands in the record for a value too
// large to record: "[omitted: <size> bytes, sha256:<hex>]".
const OmittedPrefix = "[omitted: "

// DefaultKeys are the member names whose values are redacted wherever they
// appear in the arguments, unless the configuration says otherwise. A key
// matches when, in lower case and without '_', '-', '.' and spaces, it
// holds one of them (client_secret, secret_key, db_password,
// password_confirmation, X-Api-Key, private_keys, set-cookie,
// X-Amz-Signature); "token" only at its end (access_token), or as
// "tokens", so that tokenizer, token_count and max_tokens are recorded.
var DefaultKeys = []string{
	"password", "passwd", "passphrase", "secret", "token", "api_key", "apikey", "access_key",
	"private_key", "authorization", "cookie", "credential", "signature",
}

// suffixKeys match only at the end of a key (or before a final "s").
var suffixKeys = []string{"token"}

// Default size limits.
const (
	DefaultMaxValueBytes = 4 << 10
	DefaultMaxInputBytes = 64 << 10
	// MinMaxValueBytes is the least MaxValueBytes: an omitted value's marker
	// is about 100 bytes.
	MinMaxValueBytes = 128
)

// Config says what a decision's record leaves out.
type Config struct {
	// Paths are input paths (ParsePath) whose values are replaced by
	// Redacted, anywhere in the input.
	Paths []string
	// Keys are member names redacted at any depth of args, as DefaultKeys
	// are, in addition to them unless NoDefaultKeys.
	Keys          []string
	NoDefaultKeys bool
	// Keep are paths in args exempt from the key rule (a pagination
	// "next_token", say). Paths still apply there, and the members of a kept
	// object are still checked.
	Keep []string
	// MaxValueBytes bounds one string or number of args in the record;
	// a longer one is replaced by its size and SHA-256. MaxInputBytes
	// bounds the recorded input: past it, the arguments as a whole are
	// replaced so; if it is still too large, no input is recorded.
	MaxValueBytes int
	MaxInputBytes int
}

// Recorder makes records. It is safe for concurrent use.
type Recorder struct {
	paths, keep   cursors
	keys          [][]byte // normalised
	maxValue, max int
}

// New checks cfg and makes a Recorder.
func New(cfg Config) (*Recorder, error) {
	r := &Recorder{maxValue: cfg.MaxValueBytes, max: cfg.MaxInputBytes}
	if r.maxValue == 0 {
		r.maxValue = DefaultMaxValueBytes
	}
	if r.max == 0 {
		r.max = DefaultMaxInputBytes
	}
	if r.maxValue < MinMaxValueBytes || r.maxValue > r.max {
		return nil, fmt.Errorf("record: the largest value recorded (%d bytes) must be from %d bytes to the largest input recorded (%d)", r.maxValue, MinMaxValueBytes, r.max)
	}
	for _, s := range cfg.Paths {
		p, err := ParsePath(s)
		if err != nil {
			return nil, fmt.Errorf("record: redact path %w", err)
		}
		r.paths = append(r.paths, cursor{path: p})
	}
	for _, s := range cfg.Keep {
		p, err := ParsePath(s)
		if err != nil {
			return nil, fmt.Errorf("record: keep path %w", err)
		}
		if p[0].Key != "args" {
			return nil, fmt.Errorf("record: keep path %q: the key rule applies in args only; want a path in args", s)
		}
		r.keep = append(r.keep, cursor{path: p})
	}
	keys := slices.Clone(cfg.Keys)
	if !cfg.NoDefaultKeys {
		keys = append(keys, DefaultKeys...)
	}
	for _, k := range keys {
		n := normalise(k)
		if len(n) == 0 {
			return nil, fmt.Errorf("record: redact key %q: want a member name such as api_key", k)
		}
		r.keys = append(r.keys, n)
	}
	return r, nil
}

// Record is what a decision's entry keeps of its input.
type Record struct {
	// Input is the recorded copy in canonical JSON; nil when, even with its
	// arguments left out, it is larger than the limit.
	Input json.RawMessage
	// Digest is "sha256:" and the SHA-256 of Input (of what Input would
	// have been, when it is nil).
	Digest string
	// Redacted and Omitted count the values replaced; ArgsOmitted says the
	// arguments were replaced as a whole, and Size is the recorded size
	// before that.
	Redacted, Omitted int
	ArgsOmitted       bool
	Size              int
}

// Record makes the record of input, whose canonical JSON is raw.
func (r *Recorder) Record(input map[string]any, raw []byte) (Record, error) {
	w := walker{r: r}
	rec, changed := w.root(input)
	out := Record{Redacted: w.redacted, Omitted: w.omitted}
	b := raw
	if changed {
		var err error
		if b, err = audit.AppendCanonical(nil, rec); err != nil {
			return Record{}, fmt.Errorf("record: %w", err)
		}
	}
	out.Size = len(b)
	if len(b) > r.max {
		if args, ok := rec["args"]; ok {
			ab, err := audit.AppendCanonical(nil, args)
			if err != nil {
				return Record{}, fmt.Errorf("record: %w", err)
			}
			rec = maps.Clone(rec)
			rec["args"] = omitted(ab)
			out.ArgsOmitted = true
			if b, err = audit.AppendCanonical(nil, rec); err != nil {
				return Record{}, fmt.Errorf("record: %w", err)
			}
		}
	}
	sum := sha256.Sum256(b)
	out.Digest = "sha256:" + hex.EncodeToString(sum[:])
	if len(b) <= r.max {
		out.Input = b
	}
	return out, nil
}

// walker makes one record, counting what it replaces.
type walker struct {
	r                 *Recorder
	redacted, omitted int
}

// root walks the whole input: into args always, elsewhere only where a
// redact path leads.
func (w *walker) root(input map[string]any) (map[string]any, bool) {
	var out map[string]any
	for k, v := range input {
		red, ends := w.r.paths.key(k)
		keep, _ := w.r.keep.key(k)
		var nv any
		switch {
		case ends:
			nv = w.redact()
		case k == "args" || len(red) > 0:
			var changed bool
			if nv, changed = w.value(v, red, keep, k == "args"); !changed {
				continue
			}
		default:
			continue
		}
		if out == nil {
			out = maps.Clone(input)
		}
		out[k] = nv
	}
	if out == nil {
		return input, false
	}
	return out, true
}

func (w *walker) redact() string {
	w.redacted++
	return Redacted
}

// value walks v, reached by the paths red and keep; args says v is in the
// arguments, where the key rule and the size limit apply.
func (w *walker) value(v any, red, keep cursors, args bool) (any, bool) {
	switch x := v.(type) {
	case map[string]any:
		if args || len(red) > 0 {
			return w.object(x, red, keep, args)
		}
	case []any:
		if args || len(red) > 0 {
			return w.array(x, red, keep, args)
		}
	case string:
		if args && len(x) > w.r.maxValue {
			w.omitted++
			return omitted([]byte(x)), true
		}
	case json.Number:
		if args && len(x) > w.r.maxValue {
			w.omitted++
			return omitted([]byte(x)), true
		}
	}
	return v, false
}

func (w *walker) object(m map[string]any, red, keep cursors, args bool) (any, bool) {
	var out map[string]any
	for k, v := range m {
		cr, redEnds := red.key(k)
		ck, keepEnds := keep.key(k)
		var nv any
		if redEnds || args && !keepEnds && w.r.secret(k) {
			nv = w.redact()
		} else {
			var changed bool
			if nv, changed = w.value(v, cr, ck, args); !changed {
				continue
			}
		}
		if out == nil {
			out = maps.Clone(m)
		}
		out[k] = nv
	}
	if out == nil {
		return m, false
	}
	return out, true
}

func (w *walker) array(a []any, red, keep cursors, args bool) (any, bool) {
	var out []any
	for i, v := range a {
		cr, redEnds := red.index(i)
		ck, _ := keep.index(i)
		var nv any
		if redEnds {
			nv = w.redact()
		} else {
			var changed bool
			if nv, changed = w.value(v, cr, ck, args); !changed {
				continue
			}
		}
		if out == nil {
			out = slices.Clone(a)
		}
		out[i] = nv
	}
	if out == nil {
		return a, false
	}
	return out, true
}

// secret says whether member k is one whose value is redacted wherever it
// is in args.
func (r *Recorder) secret(k string) bool {
	var buf [64]byte
	n := appendNormalised(buf[:0], k)
	for _, s := range r.keys {
		if slices.Contains(suffixKeys, string(s)) {
			// "tokens" alone is a list of them; max_tokens is a count.
			if bytes.HasSuffix(n, s) || len(n) == len(s)+1 && n[len(n)-1] == 's' && bytes.HasPrefix(n, s) {
				return true
			}
		} else if bytes.Contains(n, s) {
			return true
		}
	}
	return false
}

func normalise(k string) []byte { return appendNormalised(nil, k) }

// appendNormalised appends k in lower case, without '_', '-', '.' and
// spaces: api_key, apiKey and X-API-Key all end in "apikey".
func appendNormalised(dst []byte, k string) []byte {
	for i := 0; i < len(k); i++ {
		switch c := k[i]; {
		case c >= 'A' && c <= 'Z':
			dst = append(dst, c+'a'-'A')
		case c == '_' || c == '-' || c == '.' || c == ' ':
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// omitted is what stands for b in the record.
func omitted(b []byte) string {
	sum := sha256.Sum256(b)
	return fmt.Sprintf("%s%d bytes, sha256:%s]", OmittedPrefix, len(b), hex.EncodeToString(sum[:]))
}

// Altered says whether a recorded input has values that were left out, so
// that replaying it may not give what the whole input gave.
func Altered(recorded []byte) bool {
	return bytes.Contains(recorded, []byte(`"`+Redacted+`"`)) || bytes.Contains(recorded, []byte(`"`+OmittedPrefix))
}
