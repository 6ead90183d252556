package approvals

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrInexactNumber: a number in the arguments has no exact IEEE 754 double,
// so its canonical form (RFC 8785) would stand for another value too
// (9007199254740993 and 9007199254740992 have one form). An approval of one
// must not run the other: such arguments are refused, not approved.
var ErrInexactNumber = errors.New("a number has no exact canonical form")

// Canonical appends the RFC 8785 (JSON Canonicalization Scheme) form of v,
// a JSON-shaped value (map[string]any, []any, string, json.Number,
// float64, int, int64, bool, nil): object members sorted by the UTF-16 code
// units of their names, no whitespace, strings with the minimal escapes,
// numbers as ECMAScript writes a double.
func Canonical(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case bool:
		return strconv.AppendBool(dst, x), nil
	case string:
		return appendString(dst, x)
	case json.Number:
		return appendNumber(dst, string(x))
	case float64:
		return appendDouble(dst, x)
	case int:
		return appendNumber(dst, strconv.Itoa(x))
	case int64:
		return appendNumber(dst, strconv.FormatInt(x, 10))
	case []any:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = Canonical(dst, e); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, compareUTF16)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendString(dst, k); err != nil {
				return nil, err
			}
			dst = append(dst, ':')
			if dst, err = Canonical(dst, x[k]); err != nil {
				return nil, err
			}
		}
		return append(dst, '}'), nil
	}
	return nil, fmt.Errorf("canonical JSON: a %T is not a JSON value", v)
}

func compareUTF16(a, b string) int {
	return slices.Compare(utf16.Encode([]rune(a)), utf16.Encode([]rune(b)))
}

func appendString(dst []byte, s string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return nil, errors.New("canonical JSON: a string is not valid UTF-8")
	}
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c >= 0x20:
			dst = append(dst, c)
		case c == '\b':
			dst = append(dst, `\b`...)
		case c == '\t':
			dst = append(dst, `\t`...)
		case c == '\n':
			dst = append(dst, `\n`...)
		case c == '\f':
			dst = append(dst, `\f`...)
		case c == '\r':
			dst = append(dst, `\r`...)
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
	}
	return append(dst, '"'), nil
}

// appendNumber writes the number text s as its double, and refuses it when
// the canonical form is not the value s writes (0.1 and 1.0 are, as 0.1
// and 1; 0.10000000000000000001 and 9007199254740993 are not).
func appendNumber(dst []byte, s string) ([]byte, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is out of range", ErrInexactNumber, s)
	}
	want, ok := new(big.Rat).SetString(s)
	if !ok {
		return nil, fmt.Errorf("canonical JSON: %q is not a number", s)
	}
	n := len(dst)
	if dst, err = appendDouble(dst, f); err != nil {
		return nil, err
	}
	if got, ok := new(big.Rat).SetString(string(dst[n:])); !ok || got.Cmp(want) != 0 {
		return nil, fmt.Errorf("%w: %s", ErrInexactNumber, s)
	}
	return dst, nil
}

// appendDouble writes f as ECMAScript's Number.prototype.toString does
// (RFC 8785, section 3.2.2.3).
func appendDouble(dst []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, errors.New("canonical JSON: NaN and infinities are not JSON")
	}
	if f == 0 {
		return append(dst, '0'), nil // -0 too
	}
	if f < 0 {
		dst = append(dst, '-')
		f = -f
	}
	// The shortest digits that read back as f, and the exponent: f is
	// 0.digits × 10^n.
	e := strconv.FormatFloat(f, 'e', -1, 64) // d.ddde±x
	mant, exp, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	x, _ := strconv.Atoi(exp)
	k, n := len(digits), x+1
	switch {
	case k <= n && n <= 21:
		dst = append(dst, digits...)
		for range n - k {
			dst = append(dst, '0')
		}
	case 0 < n && n <= 21:
		dst = append(dst, digits[:n]...)
		dst = append(dst, '.')
		dst = append(dst, digits[n:]...)
	case -6 < n && n <= 0:
		dst = append(dst, "0."...)
		for range -n {
			dst = append(dst, '0')
		}
		dst = append(dst, digits...)
	default:
		dst = append(dst, digits[0])
		if k > 1 {
			dst = append(dst, '.')
			dst = append(dst, digits[1:]...)
		}
		dst = append(dst, 'e')
		if n-1 >= 0 {
			dst = append(dst, '+')
		}
		dst = strconv.AppendInt(dst, int64(n-1), 10)
	}
	return dst, nil
}
