package audit

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// The canonical form of a JSON value in an entry: object keys in byte
// order, no insignificant whitespace, numbers exactly as written, strings
// escaped as encoding/json escapes them without HTML escaping (\" \\ \b \f
// \n \r \t, \u00XX for other control characters, \u2028 and \u2029, and
// nothing else). Decoding a canonical value and encoding it again gives
// the same bytes.

// AppendCanonical appends the canonical JSON of v, a JSON-shaped value:
// map[string]any, []any, string, json.Number, bool, nil, float64, int,
// int64, []string, map[string]string.
func AppendCanonical(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case bool:
		return strconv.AppendBool(dst, x), nil
	case string:
		return appendString(dst, x), nil
	case json.Number:
		if !json.Valid([]byte(x)) || x == "" {
			return nil, fmt.Errorf("%q is not a JSON number", string(x))
		}
		return append(dst, x...), nil
	case int:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(dst, x, 10), nil
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return nil, fmt.Errorf("%v is not a JSON number", x)
		}
		b, err := json.Marshal(x) // encoding/json's choice of digits
		return append(dst, b...), err
	case []any:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = AppendCanonical(dst, e); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	case []string:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, e)
		}
		return append(dst, ']'), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(appendString(dst, k), ':')
			var err error
			if dst, err = AppendCanonical(dst, x[k]); err != nil {
				return nil, err
			}
		}
		return append(dst, '}'), nil
	case map[string]string:
		m := make(map[string]any, len(x))
		for k, s := range x {
			m[k] = s
		}
		return AppendCanonical(dst, m)
	}
	return nil, fmt.Errorf("%T is not a JSON value", v)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as encoding/json writes it with HTML escaping
// off; invalid UTF-8 becomes U+FFFD.
// StringBody is s as the canonical form writes it inside a JSON string,
// without the quotes: a value's bytes as they appear in a stored entry.
func StringBody(s string) []byte {
	b := appendString(nil, s)
	return b[1 : len(b)-1]
}

func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			// A byte that is not UTF-8 is the replacement character, as
			// itself: the form a decoder reads back and encodes again the
			// same (an escape would not be, and the entry could not be
			// read).
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\uFFFD"...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// isCanonical reports whether b is one JSON value in canonical form. It is
// a fast check for what the log writes itself; false sends a value through
// the slow path (decode, encode again), so a false negative costs time only.
func isCanonical(b []byte) bool {
	p := canonicalScanner{b: b}
	return p.value(0) && p.i == len(b)
}

type canonicalScanner struct {
	b []byte
	i int
}

const maxCanonicalDepth = 10000

func (p *canonicalScanner) value(depth int) bool {
	if p.i >= len(p.b) || depth > maxCanonicalDepth {
		return false
	}
	switch c := p.b[p.i]; {
	case c == '{':
		p.i++
		if p.peek('}') {
			p.i++
			return true
		}
		var prev []byte
		for first := true; ; first = false {
			start := p.i
			if !p.peek('"') || !p.str() {
				return false
			}
			key := p.b[start+1 : p.i-1]
			// Keys with escapes would need decoding to compare; leave
			// them to the slow path.
			if slices.Contains(key, '\\') || !first && string(key) <= string(prev) {
				return false
			}
			prev = key
			if !p.peek(':') {
				return false
			}
			p.i++
			if !p.value(depth + 1) {
				return false
			}
			if p.peek('}') {
				p.i++
				return true
			}
			if !p.peek(',') {
				return false
			}
			p.i++
		}
	case c == '[':
		p.i++
		if p.peek(']') {
			p.i++
			return true
		}
		for {
			if !p.value(depth + 1) {
				return false
			}
			if p.peek(']') {
				p.i++
				return true
			}
			if !p.peek(',') {
				return false
			}
			p.i++
		}
	case c == '"':
		return p.str()
	case c == 't':
		return p.lit("true")
	case c == 'f':
		return p.lit("false")
	case c == 'n':
		return p.lit("null")
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	}
	return false
}

func (p *canonicalScanner) peek(c byte) bool { return p.i < len(p.b) && p.b[p.i] == c }

func (p *canonicalScanner) lit(s string) bool {
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return true
}

// str accepts a string in canonical escaping.
func (p *canonicalScanner) str() bool {
	p.i++ // the opening quote
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return true
		case c == '\\':
			if p.i+1 >= len(p.b) {
				return false
			}
			switch p.b[p.i+1] {
			case '"', '\\', 'b', 'f', 'n', 'r', 't':
				p.i += 2
			case 'u':
				if len(p.b)-p.i < 6 {
					return false
				}
				hex := string(p.b[p.i+2 : p.i+6])
				if hex != "2028" && hex != "2029" && !shortControl(hex) {
					return false
				}
				p.i += 6
			default:
				return false
			}
		case c < 0x20:
			return false
		case c < utf8.RuneSelf:
			p.i++
		default:
			r, size := utf8.DecodeRune(p.b[p.i:])
			if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
				return false
			}
			p.i += size
		}
	}
	return false
}

// shortControl: \u00XX for a control character without a short escape,
// in lower-case hex as encoding/json writes it.
func shortControl(hex string) bool {
	if hex[0] != '0' || hex[1] != '0' {
		return false
	}
	v, err := strconv.ParseUint(hex[2:], 16, 8)
	if err != nil || v >= 0x20 || hex[2:] != string([]byte{hexDigits[v>>4], hexDigits[v&0xF]}) {
		return false
	}
	switch v {
	case '\b', '\f', '\n', '\r', '\t':
		return false
	}
	return true
}

// number accepts a JSON number (any valid one: numbers are kept as written).
func (p *canonicalScanner) number() bool {
	start := p.i
	if p.peek('-') {
		p.i++
	}
	switch {
	case p.peek('0'):
		p.i++
	case p.i < len(p.b) && p.b[p.i] >= '1' && p.b[p.i] <= '9':
		p.digits()
	default:
		return false
	}
	if p.peek('.') {
		p.i++
		if !p.digits() {
			return false
		}
	}
	if p.peek('e') || p.peek('E') {
		p.i++
		if p.peek('+') || p.peek('-') {
			p.i++
		}
		if !p.digits() {
			return false
		}
	}
	return p.i > start
}

func (p *canonicalScanner) digits() bool {
	start := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	return p.i > start
}
