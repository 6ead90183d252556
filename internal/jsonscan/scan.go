// Package jsonscan reads JSON in one pass without reflection, for the
// hot paths that read a few fields of a larger text (an audit entry, a
// JSON-RPC request). It checks the syntax as encoding/json does; what its
// callers would read otherwise than encoding/json (a member named twice,
// a name in another case than a field's, a value of another type), they
// give up on (ErrGiveUp) and read with encoding/json, so that the two
// readings never differ.
package jsonscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"unicode/utf8"
)

// ErrGiveUp is a Scanner giving up: on JSON that is not valid, or on
// what its caller would read otherwise than encoding/json. Its callers
// then read the text with encoding/json.
var ErrGiveUp = errors.New("jsonscan: read this with encoding/json")

// maxDepth is encoding/json's nesting limit.
const maxDepth = 10000

// Scanner reads one JSON text in one pass, checking its syntax as
// encoding/json does, and building nothing its caller does not ask for.
type Scanner struct {
	b     []byte
	i     int
	depth int
}

// New is a Scanner of b.
func New(b []byte) *Scanner { return &Scanner{b: b} }

// End says whether nothing but white space is left.
func (s *Scanner) End() bool {
	s.Space()
	return s.i == len(s.b)
}

func (s *Scanner) Space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// Next skips white space and returns the next byte, 0 at the end.
func (s *Scanner) Next() byte {
	s.Space()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// Null consumes a null if one is next.
func (s *Scanner) Null() bool {
	if s.Next() == 'n' && bytes.HasPrefix(s.b[s.i:], []byte("null")) {
		s.i += 4
		return true
	}
	return false
}

// Object reads an object (or null, for which member is never called),
// calling member with each member's name, its value next to read.
func (s *Scanner) Object(member func(key []byte) error) error {
	if s.Null() {
		return nil
	}
	if s.Next() != '{' {
		return ErrGiveUp
	}
	if s.depth++; s.depth > maxDepth {
		return ErrGiveUp
	}
	s.i++
	if s.Next() == '}' {
		s.i++
		s.depth--
		return nil
	}
	for {
		key, err := s.StrBytes()
		if err != nil {
			return err
		}
		if s.Next() != ':' {
			return ErrGiveUp
		}
		s.i++
		if err := member(key); err != nil {
			return err
		}
		switch s.Next() {
		case ',':
			s.i++
		case '}':
			s.i++
			s.depth--
			return nil
		default:
			return ErrGiveUp
		}
	}
}

// Array reads an array (or null), calling elem for each element, its value
// next to read.
func (s *Scanner) Array(elem func() error) error {
	if s.Null() {
		return nil
	}
	if s.Next() != '[' {
		return ErrGiveUp
	}
	if s.depth++; s.depth > maxDepth {
		return ErrGiveUp
	}
	s.i++
	if s.Next() == ']' {
		s.i++
		s.depth--
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		switch s.Next() {
		case ',':
			s.i++
		case ']':
			s.i++
			s.depth--
			return nil
		default:
			return ErrGiveUp
		}
	}
}

// StrBytes reads a string. One of plain ASCII or UTF-8 without escapes is
// returned as it stands in the text; any other is decoded by
// encoding/json, whose reading (escapes, invalid UTF-8 replaced) it then
// is.
func (s *Scanner) StrBytes() ([]byte, error) {
	if s.Next() != '"' {
		return nil, ErrGiveUp
	}
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
				return nil, ErrGiveUp
			}
			return []byte(v), nil
		case c == '\\':
			plain = false
			s.i += 2
		case c < 0x20:
			return nil, ErrGiveUp
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
	return nil, ErrGiveUp
}

// Str reads a string; null reads as "", as encoding/json leaves a string
// it is given null for.
func (s *Scanner) Str() (string, error) {
	if s.Null() {
		return "", nil
	}
	b, err := s.StrBytes()
	return string(b), err
}

// Strs reads an array of strings: null is a nil slice, [] an empty one.
func (s *Scanner) Strs() ([]string, error) {
	if s.Null() {
		return nil, nil
	}
	out := []string{}
	err := s.Array(func() error {
		v, err := s.Str()
		out = append(out, v)
		return err
	})
	return out, err
}

// Int reads an integer (null is 0).
func (s *Scanner) Int() (int64, error) {
	if s.Null() {
		return 0, nil
	}
	start := s.i
	if err := s.number(); err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(string(s.b[start:s.i]), 10, 64)
	if err != nil {
		return 0, ErrGiveUp
	}
	return n, nil
}

// Raw reads any value and returns its bytes.
func (s *Scanner) Raw() ([]byte, error) {
	s.Space()
	start := s.i
	if err := s.Skip(); err != nil {
		return nil, err
	}
	return s.b[start:s.i], nil
}

// Skip reads any value, checking its syntax.
func (s *Scanner) Skip() error {
	switch c := s.Next(); {
	case c == '{':
		return s.Object(func([]byte) error { return s.Skip() })
	case c == '[':
		return s.Array(s.Skip)
	case c == '"':
		_, err := s.StrBytes()
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

func (s *Scanner) literal(lit string) error {
	if !bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		return ErrGiveUp
	}
	s.i += len(lit)
	return nil
}

// number reads a number as JSON writes one.
func (s *Scanner) number() error {
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
		return ErrGiveUp
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return ErrGiveUp
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return ErrGiveUp
		}
	}
	return nil
}

// Fields reads an object (or null) as encoding/json reads one into a
// struct whose fields are names (32 at most): each member named in names
// is read by read (with its index in names), the others are skipped. A
// name in another case than one of names, or one named twice, gives up:
// encoding/json would read the one into the field, and merge the other
// or read it over.
func (s *Scanner) Fields(names []string, read func(i int) error) error {
	var seen uint32
	return s.Object(func(key []byte) error {
		i := slices.IndexFunc(names, func(m string) bool { return bytes.EqualFold(key, []byte(m)) })
		if i < 0 {
			return s.Skip()
		}
		if string(key) != names[i] || seen&(1<<i) != 0 {
			return ErrGiveUp
		}
		seen |= 1 << i
		return read(i)
	})
}

// Members reads an object (or null) as encoding/json reads one into a
// map, for the names given (32 at most): each member named in names is
// read by read (with its index in names), the others are skipped. Names
// are matched exactly; one named twice gives up, since encoding/json
// keeps the last.
func (s *Scanner) Members(names []string, read func(i int) error) error {
	var seen uint32
	return s.Object(func(key []byte) error {
		i := slices.IndexFunc(names, func(m string) bool { return string(key) == m })
		if i < 0 {
			return s.Skip()
		}
		if seen&(1<<i) != 0 {
			return ErrGiveUp
		}
		seen |= 1 << i
		return read(i)
	})
}
