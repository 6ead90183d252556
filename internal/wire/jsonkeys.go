package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxDepth bounds how deeply JSON that CheckKeys reads may nest, as
// encoding/json bounds what it decodes.
const maxDepth = 10000

// CheckKeys refuses JSON in which one object gives a member name twice, or
// two names that differ only in case. Parsers differ on which of them they
// keep (the first, the last, or, matching names to fields without regard
// to case as Go's does, either): an upstream could act on another value
// than the one policy decided on. It says nothing of JSON that does not
// parse; decoding does.
func CheckKeys(raw []byte) error {
	k := keyScanner{b: raw}
	for {
		k.space()
		if k.i >= len(k.b) {
			return nil
		}
		if ok, err := k.value(0); err != nil || !ok {
			return err
		}
	}
}

// keyScanner walks JSON for CheckKeys: it reads member names and skips
// everything else, without checking what it skips (decoding does).
// value's ok is false when the JSON is broken: the walk stops there.
type keyScanner struct {
	b []byte
	i int
}

func (k *keyScanner) space() {
	for k.i < len(k.b) {
		switch k.b[k.i] {
		case ' ', '\t', '\n', '\r':
			k.i++
		default:
			return
		}
	}
}

func (k *keyScanner) value(depth int) (ok bool, err error) {
	k.space()
	if k.i >= len(k.b) {
		return false, nil
	}
	switch k.b[k.i] {
	case '{', '[':
		if depth >= maxDepth {
			return false, errors.New("the JSON is nested too deeply")
		}
		if k.b[k.i] == '[' {
			return k.array(depth)
		}
		return k.object(depth)
	case '"':
		_, ok := k.str()
		return ok, nil
	}
	// A number or a literal: up to the next delimiter.
	start := k.i
	for k.i < len(k.b) && !strings.ContainsRune(",]} \t\n\r", rune(k.b[k.i])) {
		k.i++
	}
	return k.i > start, nil
}

func (k *keyScanner) array(depth int) (bool, error) {
	k.i++ // [
	k.space()
	if k.i < len(k.b) && k.b[k.i] == ']' {
		k.i++
		return true, nil
	}
	for {
		if more, ok, err := k.next(depth, ']'); err != nil || !ok || !more {
			return ok, err
		}
	}
}

// next reads a value inside an array or object, then what follows it: a
// comma (more is true) or the container's end, close. ok is false when the
// JSON is broken.
func (k *keyScanner) next(depth int, close byte) (more, ok bool, err error) {
	if ok, err := k.value(depth + 1); err != nil || !ok {
		return false, ok, err
	}
	k.space()
	if k.i >= len(k.b) {
		return false, false, nil
	}
	switch k.b[k.i] {
	case ',':
		k.i++
		return true, true, nil
	case close:
		k.i++
		return false, true, nil
	}
	return false, false, nil
}

func (k *keyScanner) object(depth int) (bool, error) {
	k.i++ // {
	// The names so far and their case foldings: in a list while few, as
	// most objects are, then by folding.
	var names, folded []string
	var byFold map[string]string
	for first := true; ; first = false {
		k.space()
		if k.i >= len(k.b) {
			return false, nil
		}
		if first && k.b[k.i] == '}' {
			k.i++
			return true, nil
		}
		if k.b[k.i] != '"' {
			return false, nil
		}
		name, ok := k.str()
		if !ok {
			return false, nil
		}
		f := fold(name)
		prev, seen := byFold[f]
		if byFold == nil {
			if j := slices.Index(folded, f); j >= 0 {
				prev, seen = names[j], true
			}
		}
		if seen {
			if prev == name {
				return false, fmt.Errorf("the name %q is given twice in one object", name)
			}
			return false, fmt.Errorf("the names %q and %q differ only in case: an upstream may read either", prev, name)
		}
		switch {
		case byFold != nil:
			byFold[f] = name
		case len(names) < 16:
			names, folded = append(names, name), append(folded, f)
		default:
			byFold = make(map[string]string, 2*len(names))
			for j := range names {
				byFold[folded[j]] = names[j]
			}
			byFold[f] = name
		}
		k.space()
		if k.i >= len(k.b) || k.b[k.i] != ':' {
			return false, nil
		}
		k.i++
		if more, ok, err := k.next(depth, '}'); err != nil || !ok || !more {
			return ok, err
		}
	}
}

// str reads a string at k.i (its opening quote) and returns its value.
func (k *keyScanner) str() (string, bool) {
	start := k.i
	escaped := false
	for k.i++; k.i < len(k.b); k.i++ {
		switch k.b[k.i] {
		case '\\':
			escaped = true
			k.i++
		case '"':
			k.i++
			raw := k.b[start:k.i]
			if !escaped && utf8.Valid(raw) {
				return string(raw[1 : len(raw)-1]), true
			}
			// As decoding reads it: escapes resolved, bytes that are not
			// UTF-8 replaced.
			var s string
			if json.Unmarshal(raw, &s) != nil {
				return "", false
			}
			return s, true
		}
	}
	return "", false
}

// fold is s with each letter replaced by the smallest of its case
// variants: two strings fold alike when strings.EqualFold says they are
// equal, or when they are equal once lowered and raised again, as parsers
// that compare names by their upper or lower case see them (the dotless
// ı raises to I, the dotted İ lowers to i; neither folds so in Unicode's
// simple case folding).
func fold(s string) string {
	ascii := true
	for i := 0; i < len(s) && ascii; i++ {
		ascii = s[i] < utf8.RuneSelf
	}
	if ascii {
		// An ASCII letter's smallest variant is its capital (k and s have
		// non-ASCII variants, the Kelvin and long s signs, both larger).
		return strings.ToUpper(s)
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		r = unicode.ToUpper(unicode.ToLower(r))
		low := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			low = min(low, f)
		}
		b.WriteRune(low)
	}
	return b.String()
}
