package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
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
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	// For each open object, its names by their case folding; nil for an
	// open array.
	var open []map[string]string
	key := false // the next string is a member name
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // the end (io.EOF), or JSON that decoding refuses
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if len(open) >= maxDepth {
					return errors.New("the JSON is nested too deeply")
				}
				var names map[string]string
				if v == '{' {
					names = map[string]string{}
				}
				open = append(open, names)
				key = v == '{'
				continue
			default:
				open = open[:len(open)-1]
			}
		case string:
			if key {
				names := open[len(open)-1]
				f := fold(v)
				if prev, ok := names[f]; ok {
					if prev == v {
						return fmt.Errorf("the name %q is given twice in one object", v)
					}
					return fmt.Errorf("the names %q and %q differ only in case: an upstream may read either", prev, v)
				}
				names[f] = v
				key = false
				continue
			}
		}
		// A value ended: in an object, a name comes next.
		key = len(open) > 0 && open[len(open)-1] != nil
	}
}

// fold is s with each letter replaced by the smallest of its case
// variants: two strings fold alike when strings.EqualFold says they are
// equal.
func fold(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		low := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			low = min(low, f)
		}
		b.WriteRune(low)
	}
	return b.String()
}
