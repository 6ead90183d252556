package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/transparency-dev/merkle/rfc6962"
)

// Kind says what an entry records.
type Kind string

// Entry kinds.
const (
	KindDecision Kind = "decision" // an access decision by the decision point
	KindAdmin    Kind = "admin"    // an administrative action
	KindResponse Kind = "response" // an automated response (restrict, quarantine, revoke)
	KindPolicy   Kind = "policy"   // a policy change: push, activation, rollback
	KindToken    Kind = "token"    // a token issued, exchanged or refused at the token endpoint
	KindUsage    Kind = "usage"    // what an enforcement point relayed to an agent over an interval
)

func (k Kind) valid() bool {
	switch k {
	case KindDecision, KindAdmin, KindResponse, KindPolicy, KindToken, KindUsage:
		return true
	}
	return false
}

// Entry is one record of the log. Its leaf in the Merkle tree is its
// canonical JSON (Canonical): object keys in byte order, no insignificant
// whitespace. Index and Prev are set by the log when the entry is appended:
// Prev is the hex leaf hash of the entry before it, a chain that makes the
// first modified entry of a naively edited log stand out by itself.
type Entry struct {
	// Fields are in the byte order of their JSON names, as the canonical
	// form has them; see encodeParts.

	// What was done.
	Action string `json:"action"`
	// Who acted: an admin or system actor, or an agent for decisions.
	Actor string `json:"actor,omitempty"`
	Agent string `json:"agent,omitempty"`
	// Decision context.
	DecisionID string `json:"decision_id,omitempty"`
	// Detail holds kind-specific fields (a JSON object); never secrets.
	Detail           json.RawMessage `json:"detail,omitempty"`
	EnforcementPoint string          `json:"enforcement_point,omitempty"`
	Index            int64           `json:"index"`
	Input            json.RawMessage `json:"input,omitempty"`
	InputDigest      string          `json:"input_digest,omitempty"`
	Kind             Kind            `json:"kind"`
	LatencyMicros    int64           `json:"latency_us,omitempty"`
	Outcome          string          `json:"outcome,omitempty"`
	PolicyVersion    string          `json:"policy_version,omitempty"`
	Prev             string          `json:"prev,omitempty"`
	Reasons          []string        `json:"reasons,omitempty"`
	Resource         json.RawMessage `json:"resource,omitempty"`
	Target           string          `json:"target,omitempty"`
	Time             time.Time       `json:"time"`

	// parts caches the canonical encoding of every field but Index and
	// Prev (set by Prepare), so that the log, once it knows those two, only
	// joins bytes.
	parts *entryParts
}

// The canonical form is one JSON object with keys in byte order. Index and
// Prev fall between the other keys, so the rest is encoded in three runs:
// the keys before "index" (action, actor, agent, decision_id, detail,
// enforcement_point), those between "index" and "prev" (input,
// input_digest, kind, latency_us, outcome, policy_version), those after
// (reasons, resource, target, time).
//
// entryParts holds the three runs, each without its braces; none is
// empty, since action, kind and time are always present.
type entryParts struct{ before, between, after []byte }

// MaxEntrySize bounds one entry's canonical form.
const MaxEntrySize = 1 << 20

// ErrBadEntry is wrapped by every refusal of an entry.
var ErrBadEntry = errors.New("bad audit entry")

// Validate checks an entry before it is appended.
func (e *Entry) Validate() error {
	if !e.Kind.valid() {
		return fmt.Errorf("%w: kind %q", ErrBadEntry, e.Kind)
	}
	if e.Action == "" {
		return fmt.Errorf("%w: action is required", ErrBadEntry)
	}
	if e.Time.IsZero() {
		return fmt.Errorf("%w: time is required", ErrBadEntry)
	}
	if e.parts != nil {
		return nil // Prepare refused whatever was not valid JSON
	}
	for _, f := range [...]struct {
		name string
		raw  json.RawMessage
	}{{"resource", e.Resource}, {"input", e.Input}, {"detail", e.Detail}} {
		if len(f.raw) > 0 && !json.Valid(f.raw) {
			return fmt.Errorf("%w: %s is not valid JSON", ErrBadEntry, f.name)
		}
	}
	return nil
}

// Prepare encodes everything but Index and Prev in canonical form, so that
// later encodings (once the log has set those two) only join bytes. Changing
// any other field after Prepare is a mistake.
func (e *Entry) Prepare() error {
	if e.parts != nil {
		return nil
	}
	raw := [3]json.RawMessage{e.Resource, e.Input, e.Detail}
	for i, r := range raw {
		if len(r) == 0 || isCanonical(r) {
			continue // what Warden writes is canonical already
		}
		if !json.Valid(r) {
			return fmt.Errorf("%w: %s is not valid JSON", ErrBadEntry, [3]string{"resource", "input", "detail"}[i])
		}
		c, err := recanonicalize(r)
		if err != nil {
			return err
		}
		raw[i] = c
	}
	// Bytes that are not UTF-8 (from a request's path, through a policy's
	// reason) become the replacement character here, as the stored entry
	// says them: encoding/json would write an escape, which reads back as
	// the character itself, so the entry would fail its own canonical
	// check and could never be read.
	for _, f := range []*string{&e.Action, &e.Actor, &e.Agent, &e.DecisionID, &e.EnforcementPoint, &e.InputDigest, &e.Outcome, &e.PolicyVersion, &e.Target} {
		*f = strings.ToValidUTF8(*f, "\uFFFD")
	}
	for i, r := range e.Reasons {
		if !utf8.ValidString(r) {
			e.Reasons = slices.Clone(e.Reasons) // the caller's slice stays as it is
			for j := i; j < len(e.Reasons); j++ {
				e.Reasons[j] = strings.ToValidUTF8(e.Reasons[j], "\uFFFD")
			}
			break
		}
	}
	p, err := e.encodeParts(raw)
	if err != nil {
		return err
	}
	e.parts = p
	return nil
}

// encodeParts writes the three runs of the canonical form by hand, as
// encoding/json would write them (no HTML escaping; empty optional fields
// left out) but without its reflection, and without its checking and
// compacting of the raw values again: raw holds resource, input and
// detail already in canonical form. Strings are valid UTF-8 here
// (Prepare replaced what was not), where the two encoders agree.
func (e *Entry) encodeParts(raw [3]json.RawMessage) (*entryParts, error) {
	// One buffer for the three runs, sized for the usual case (strings
	// needing no escapes): appends past it grow it, once or so.
	size := 160 + len(raw[0]) + len(raw[1]) + len(raw[2]) + len(e.Action) + len(e.Actor) + len(e.Agent) + len(e.DecisionID) +
		len(e.EnforcementPoint) + len(e.InputDigest) + len(e.Outcome) + len(e.PolicyVersion) + len(e.Target)
	for _, s := range e.Reasons {
		size += len(s) + 3
	}
	r := run{b: make([]byte, 0, size)}
	r.str("action", e.Action, false)
	r.str("actor", e.Actor, true)
	r.str("agent", e.Agent, true)
	r.str("decision_id", e.DecisionID, true)
	r.raw("detail", raw[2])
	r.str("enforcement_point", e.EnforcementPoint, true)
	before := r.take()
	r.raw("input", raw[1])
	r.str("input_digest", e.InputDigest, true)
	r.str("kind", string(e.Kind), false)
	if e.LatencyMicros != 0 {
		r.key("latency_us")
		r.b = strconv.AppendInt(r.b, e.LatencyMicros, 10)
	}
	r.str("outcome", e.Outcome, true)
	r.str("policy_version", e.PolicyVersion, true)
	between := r.take()
	if len(e.Reasons) > 0 {
		r.key("reasons")
		r.b = append(r.b, '[')
		for i, s := range e.Reasons {
			if i > 0 {
				r.b = append(r.b, ',')
			}
			r.b = appendString(r.b, s)
		}
		r.b = append(r.b, ']')
	}
	r.raw("resource", raw[0])
	r.str("target", e.Target, true)
	t := e.Time.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return nil, fmt.Errorf("%w: time %v is outside years 0 to 9999", ErrBadEntry, y)
	}
	r.key("time")
	r.b = append(r.b, '"')
	r.b = t.AppendFormat(r.b, time.RFC3339Nano)
	r.b = append(r.b, '"')
	return &entryParts{before: before, between: between, after: r.take()}, nil
}

// run is a run of "key":value pairs being written, from b[start:].
type run struct {
	b     []byte
	start int
}

func (r *run) key(k string) {
	if len(r.b) > r.start {
		r.b = append(r.b, ',')
	}
	r.b = append(r.b, '"')
	r.b = append(r.b, k...)
	r.b = append(r.b, '"', ':')
}

func (r *run) str(k, v string, omitEmpty bool) {
	if omitEmpty && v == "" {
		return
	}
	r.key(k)
	r.b = appendString(r.b, v)
}

func (r *run) raw(k string, v json.RawMessage) {
	if len(v) == 0 {
		return
	}
	r.key(k)
	r.b = append(r.b, v...)
}

// take ends the run: its bytes, which later appends do not touch.
func (r *run) take() []byte {
	b := r.b[r.start:len(r.b):len(r.b)]
	r.start = len(r.b)
	return b
}

// Canonical returns the entry's canonical JSON: the exact bytes of its leaf.
func (e *Entry) Canonical() ([]byte, error) {
	size, err := e.leafSize()
	if err != nil {
		return nil, err
	}
	p := e.parts
	out := make([]byte, 0, size)
	out = append(out, '{')
	out = append(out, p.before...)
	out = append(out, `,"index":`...)
	out = strconv.AppendInt(out, e.Index, 10)
	out = append(out, ',')
	out = append(out, p.between...)
	if e.Prev != "" {
		out = append(out, `,"prev":`...)
		out = strconv.AppendQuote(out, e.Prev)
	}
	out = append(out, ',')
	out = append(out, p.after...)
	out = append(out, '}')
	return out, nil
}

// leafSize prepares e and returns the length of its canonical JSON as
// Canonical writes it (Index and Prev as they are now), refusing an entry
// over MaxEntrySize, without writing it.
func (e *Entry) leafSize() (int, error) {
	if err := e.Prepare(); err != nil {
		return 0, err
	}
	p := e.parts
	n := len(`{,"index":,,}`) + len(p.before) + len(p.between) + len(p.after)
	n += len(strconv.AppendInt(make([]byte, 0, 20), e.Index, 10))
	if e.Prev != "" {
		n += len(`,"prev":`) + len(strconv.Quote(e.Prev))
	}
	if n > MaxEntrySize {
		return 0, fmt.Errorf("%w: %d bytes, the limit is %d", ErrBadEntry, n, MaxEntrySize)
	}
	return n, nil
}

// canonicalJSON re-encodes a JSON value with object keys in byte order,
// numbers exactly as written, no insignificant whitespace and no HTML
// escaping.
func canonicalJSON(b []byte) ([]byte, error) {
	if isCanonical(b) {
		return b, nil // what Warden writes is canonical already
	}
	return recanonicalize(b)
}

// recanonicalize decodes b and encodes it again, canonically.
func recanonicalize(b []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadEntry, err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil { // maps marshal with sorted keys
		return nil, fmt.Errorf("%w: %v", ErrBadEntry, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// PeekEntry decodes an entry's fields from leaf bytes, without the checks
// of DecodeEntry (canonical form, known fields, valid values), which cost
// about five times as much: for readers that take the log's entries as
// they read them and prove nothing with them (the behaviour monitor,
// lists of entries). Whatever proves or verifies an entry uses
// DecodeEntry.
func PeekEntry(b []byte) (*Entry, error) {
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadEntry, err)
	}
	return &e, nil
}

// DecodeEntry parses leaf bytes as an entry. It refuses anything that is not
// exactly the canonical form of a valid entry, so one entry has one encoding.
func DecodeEntry(b []byte) (*Entry, error) {
	if len(b) > MaxEntrySize {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrBadEntry, len(b), MaxEntrySize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var e Entry
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadEntry, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the entry", ErrBadEntry)
	}
	if e.Index < 0 {
		return nil, fmt.Errorf("%w: negative index", ErrBadEntry)
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	if e.Prev != "" && !isHexHash(e.Prev) {
		return nil, fmt.Errorf("%w: prev is not a hex SHA-256", ErrBadEntry)
	}
	c, err := e.Canonical()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(c, b) {
		return nil, fmt.Errorf("%w: not in canonical form", ErrBadEntry)
	}
	return &e, nil
}

func isHexHash(s string) bool {
	if len(s) != 2*sha256.Size || strings.ToLower(s) != s {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// LeafHash is the RFC 6962 leaf hash of leaf data: SHA-256(0x00 || data).
func LeafHash(data []byte) []byte { return rfc6962.DefaultHasher.HashLeaf(data) }

// NodeHash is the RFC 6962 interior node hash: SHA-256(0x01 || left || right).
func NodeHash(left, right []byte) []byte { return rfc6962.DefaultHasher.HashChildren(left, right) }

var hasher = rfc6962.DefaultHasher

// Sequence gives entries the indexes that follow size and chains each to
// the one before (prev is the leaf hash of entry size-1, nil for an empty
// log). It returns their canonical bytes and leaf hashes: what a backend
// stores.
func Sequence(entries []*Entry, size int64, prev []byte) (data, leaves [][]byte, err error) {
	data = make([][]byte, len(entries))
	leaves = make([][]byte, len(entries))
	for i, e := range entries {
		e.Index, e.Prev = size+int64(i), ""
		if e.Index > 0 {
			e.Prev = hex.EncodeToString(prev)
		}
		if data[i], err = e.Canonical(); err != nil {
			return nil, nil, err
		}
		prev = LeafHash(data[i])
		leaves[i] = prev
	}
	return data, leaves, nil
}
