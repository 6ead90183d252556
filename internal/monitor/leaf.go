package monitor

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/warden-run/warden/internal/audit"
)

// scanLeaf is DecodeLeaf's fast reading: one pass over the entry's bytes,
// no reflection, and nothing built of the input but what the model reads.
// The monitor reads every entry the log gets, so this is on the path of
// every call an enforcement point records.
//
// It reads what the log writes (the canonical form), and gives up
// (errSlowPath) on whatever the reflection-based reading might read
// otherwise: a member named twice, a member name in another case than the
// field's, a value of another type. DecodeLeaf then reads the entry the
// slow way, so both always agree (FuzzDecodeLeaf).
func scanLeaf(b []byte) (Event, bool, error) {
	s := scanner{b: b}
	var e audit.Entry
	var in *recordedInput
	var res *resourceRef
	var seen uint32
	err := s.object(func(key []byte) error {
		i := slices.IndexFunc(entryMembers, func(m string) bool { return bytes.EqualFold(key, []byte(m)) })
		if i < 0 {
			return s.skip()
		}
		if string(key) != entryMembers[i] || seen&(1<<i) != 0 {
			return errSlowPath
		}
		seen |= 1 << i
		var err error
		switch entryMembers[i] {
		case "action":
			e.Action, err = s.str()
		case "agent":
			e.Agent, err = s.str()
		case "detail":
			e.Detail, err = s.raw()
		case "index":
			e.Index, err = s.int()
		case "input":
			in, err = s.input()
		case "kind":
			var k string
			k, err = s.str()
			e.Kind = audit.Kind(k)
		case "outcome":
			e.Outcome, err = s.str()
		case "reasons":
			e.Reasons, err = s.strs()
		case "resource":
			res, err = s.resource()
		case "target":
			e.Target, err = s.str()
		case "time":
			var raw []byte
			if raw, err = s.raw(); err == nil {
				err = e.Time.UnmarshalJSON(raw)
			}
		case "latency_us":
			_, err = s.int()
		default:
			_, err = s.str()
		}
		return err
	})
	if err == nil {
		s.space()
		if s.i != len(s.b) {
			err = errSlowPath
		}
	}
	if err != nil {
		return Event{}, false, err
	}
	ev, ok := decode(&e, in, res)
	return ev, ok, nil
}

// The members of an entry (audit.Entry's fields): the model reads some,
// the others are read for their type, as encoding/json reads them.
var entryMembers = []string{"action", "actor", "agent", "decision_id", "detail", "enforcement_point", "index", "input",
	"input_digest", "kind", "latency_us", "outcome", "policy_version", "prev", "reasons", "resource", "target", "time"}

// errSlowPath is the scanner giving up: the entry is read the slow way.
var errSlowPath = errors.New("monitor: read the entry the slow way")

// maxDepth is encoding/json's nesting limit.
const maxDepth = 10000

// scanner reads one JSON text, checking its syntax as encoding/json does.
type scanner struct {
	b     []byte
	i     int
	depth int
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// next skips white space and returns the next byte, 0 at the end.
func (s *scanner) next() byte {
	s.space()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// null consumes a null if one is next.
func (s *scanner) null() bool {
	if s.next() == 'n' && bytes.HasPrefix(s.b[s.i:], []byte("null")) {
		s.i += 4
		return true
	}
	return false
}

// object reads an object (or null, for which member is never called),
// calling member with each member's name, its value next to read.
func (s *scanner) object(member func(key []byte) error) error {
	if s.null() {
		return nil
	}
	if s.next() != '{' {
		return errSlowPath
	}
	if s.depth++; s.depth > maxDepth {
		return errSlowPath
	}
	s.i++
	if s.next() == '}' {
		s.i++
		s.depth--
		return nil
	}
	for {
		if s.next() != '"' {
			return errSlowPath
		}
		key, err := s.strBytes()
		if err != nil {
			return err
		}
		if s.next() != ':' {
			return errSlowPath
		}
		s.i++
		if err := member(key); err != nil {
			return err
		}
		switch s.next() {
		case ',':
			s.i++
		case '}':
			s.i++
			s.depth--
			return nil
		default:
			return errSlowPath
		}
	}
}

// array reads an array (or null), calling elem for each element, its value
// next to read.
func (s *scanner) array(elem func() error) error {
	if s.null() {
		return nil
	}
	if s.next() != '[' {
		return errSlowPath
	}
	if s.depth++; s.depth > maxDepth {
		return errSlowPath
	}
	s.i++
	if s.next() == ']' {
		s.i++
		s.depth--
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		switch s.next() {
		case ',':
			s.i++
		case ']':
			s.i++
			s.depth--
			return nil
		default:
			return errSlowPath
		}
	}
}

// strBytes reads a string, s.i at its opening quote. A string of plain
// ASCII or UTF-8 without escapes is returned as it stands in s.b; any
// other is decoded by encoding/json, whose reading (escapes, invalid
// UTF-8 replaced) it then is.
func (s *scanner) strBytes() ([]byte, error) {
	start := s.i
	s.i++
	plain := true
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			raw := s.b[start+1 : s.i-1]
			if plain {
				return raw, nil
			}
			var v string
			if err := json.Unmarshal(s.b[start:s.i], &v); err != nil {
				return nil, errSlowPath
			}
			return []byte(v), nil
		case c == '\\':
			plain = false
			s.i += 2
		case c < 0x20:
			return nil, errSlowPath
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && n == 1 {
				plain = false
			}
			s.i += n
		default:
			s.i++
		}
	}
	return nil, errSlowPath
}

// str reads a string; null reads as "", as encoding/json leaves a string
// it is given null for.
func (s *scanner) str() (string, error) {
	if s.null() {
		return "", nil
	}
	if s.next() != '"' {
		return "", errSlowPath
	}
	b, err := s.strBytes()
	return string(b), err
}

// strs reads an array of strings: null is a nil slice, [] an empty one.
func (s *scanner) strs() ([]string, error) {
	if s.null() {
		return nil, nil
	}
	out := []string{}
	err := s.array(func() error {
		v, err := s.str()
		out = append(out, v)
		return err
	})
	return out, err
}

// int reads an integer (null is 0).
func (s *scanner) int() (int64, error) {
	if s.null() {
		return 0, nil
	}
	start := s.i
	if err := s.number(); err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(string(s.b[start:s.i]), 10, 64)
	if err != nil {
		return 0, errSlowPath
	}
	return n, nil
}

// raw reads any value and returns its bytes.
func (s *scanner) raw() ([]byte, error) {
	s.space()
	start := s.i
	if err := s.skip(); err != nil {
		return nil, err
	}
	return s.b[start:s.i], nil
}

// skip reads any value, checking its syntax.
func (s *scanner) skip() error {
	switch c := s.next(); {
	case c == '{':
		return s.object(func([]byte) error { return s.skip() })
	case c == '[':
		return s.array(s.skip)
	case c == '"':
		_, err := s.strBytes()
		return err
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	default:
		return s.number()
	}
}

func (s *scanner) literal(lit string) error {
	if !bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		return errSlowPath
	}
	s.i += len(lit)
	return nil
}

// number reads a number as JSON writes one.
func (s *scanner) number() error {
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i < len(s.b) && s.b[s.i] == '0':
		s.i++
	case digits() == 0:
		return errSlowPath
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return errSlowPath
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return errSlowPath
		}
	}
	return nil
}

// fields reads an object whose members named in names are read by read
// (with their index in names), the others skipped. A name in another case
// than one of names, or one named twice, gives up: encoding/json would
// read the one into the field and merge the other.
func (s *scanner) fields(names []string, read func(i int) error) error {
	var seen uint32
	return s.object(func(key []byte) error {
		i := slices.IndexFunc(names, func(m string) bool { return bytes.EqualFold(key, []byte(m)) })
		if i < 0 {
			return s.skip()
		}
		if string(key) != names[i] || seen&(1<<i) != 0 {
			return errSlowPath
		}
		seen |= 1 << i
		return read(i)
	})
}

// resource reads an entry's resource: null is nil, as encoding/json sets
// the pointer.
func (s *scanner) resource() (*resourceRef, error) {
	if s.null() {
		return nil, nil
	}
	r := new(resourceRef)
	return r, s.fields([]string{"kind", "id"}, func(i int) (err error) {
		if i == 0 {
			r.Kind, err = s.str()
		} else {
			r.ID, err = s.str()
		}
		return err
	})
}

// input reads what the model needs of a recorded input (recordedInput).
func (s *scanner) input() (*recordedInput, error) {
	if s.null() {
		return nil, nil
	}
	in := new(recordedInput)
	return in, s.fields([]string{"agent", "args", "resource", "context"}, func(i int) (err error) {
		switch i {
		case 0:
			return s.fields([]string{"roles"}, func(int) error {
				in.Agent.Roles, err = s.strs()
				return err
			})
		case 1:
			return s.args(in)
		case 2:
			return s.fields([]string{"attributes"}, func(int) error { return s.attributes(in) })
		default:
			c := &in.Context
			return s.fields([]string{"source", "session", "delegation"}, func(i int) error {
				switch i {
				case 0:
					return s.fields([]string{"ip", "region"}, func(i int) error {
						if i == 0 {
							c.Source.IP, err = s.str()
						} else {
							c.Source.Region, err = s.str()
						}
						return err
					})
				case 1:
					return s.fields([]string{"taints"}, func(int) error {
						c.Session.Taints, err = s.strs()
						return err
					})
				default:
					c.Delegation, err = s.strs()
					return err
				}
			})
		}
	})
}

// args reads the input's arguments: their names, when they are an
// object, as fromInput would read them (Args is left empty).
func (s *scanner) args(in *recordedInput) error {
	in.argsRead = true
	if s.next() != '{' {
		return s.skip()
	}
	keys := in.argKeys[:0]
	err := s.object(func(key []byte) error {
		keys = append(keys, string(key))
		return s.skip()
	})
	slices.Sort(keys)
	in.argKeys = slices.Compact(keys)
	return err
}

// attributes reads the resource's attributes the model reads (egress,
// external, trust_domain) into a map as encoding/json would make it,
// their values as any: a map is read by exact names, and a name twice is
// the later value.
func (s *scanner) attributes(in *recordedInput) error {
	if s.null() {
		in.Resource.Attributes = nil
		return nil
	}
	if s.next() != '{' {
		return errSlowPath
	}
	a := map[string]any{}
	in.Resource.Attributes = a
	return s.object(func(key []byte) error {
		switch string(key) {
		case "egress", "external", "trust_domain":
			raw, err := s.raw()
			if err != nil {
				return err
			}
			var v any
			if err := json.Unmarshal(raw, &v); err != nil {
				return errSlowPath
			}
			a[string(key)] = v
			return nil
		}
		return s.skip()
	})
}
