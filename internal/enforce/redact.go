package enforce

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Redacted replaces a redacted value.
const Redacted = "[redacted]"

// ErrCannotRedact means that what a redact obligation asks cannot be done:
// the obligation is not a list of field paths, or an answer that may hold
// the fields cannot be read. Nothing is passed on then.
var ErrCannotRedact = errors.New("cannot redact as policy requires")

// Redactions reads the redact obligation: a list of field paths
// ("patient.ssn"). Anything else is ErrCannotRedact: what must be hidden
// is unknown.
func Redactions(obligations map[string]any) ([][]string, error) {
	v, ok := obligations["redact"]
	if !ok {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: the redact obligation is not a list of field paths", ErrCannotRedact)
	}
	var out [][]string
	for _, f := range list {
		s, ok := f.(string)
		if !ok || s == "" {
			return nil, fmt.Errorf("%w: the redact obligation holds %v, not a field path", ErrCannotRedact, f)
		}
		path := strings.Split(s, ".")
		for _, name := range path {
			// Arrays are walked element by element: "rows[*].ssn" or
			// "rows[0].ssn" would match no field, and mask nothing.
			if name == "" || strings.ContainsAny(name, "[]*") {
				return nil, fmt.Errorf("%w: the redact obligation's path %q: dotted field names from the root of the answer (arrays are walked element by element; no indexes or wildcards)", ErrCannotRedact, s)
			}
		}
		out = append(out, path)
	}
	return out, nil
}

// ErrObligation means a decision carries an obligation the enforcement
// point does not know how to apply: the action is refused, since what
// policy made the allow depend on would not hold.
var ErrObligation = errors.New("an obligation the enforcement point cannot apply")

// appliedByWarden are obligations the decision point applies itself.
var appliedByWarden = []string{"taint", "require_approvals"}

// CheckObligations refuses obligations other than those Warden applies
// itself and those the enforcement point names (mine).
func CheckObligations(obligations map[string]any, mine ...string) error {
	for k := range obligations {
		if !slices.Contains(appliedByWarden, k) && !slices.Contains(mine, k) {
			return fmt.Errorf("%w: %q", ErrObligation, k)
		}
	}
	return nil
}

// RedactValue masks the fields in a JSON-shaped value, going through JSON
// so that any Go value is walked alike; numbers keep their digits.
func RedactValue(v any, fields [][]string) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out any
	if dec.Decode(&out) != nil {
		return v
	}
	for _, f := range fields {
		mask(out, f)
	}
	return out
}

// RedactDocument masks the fields in a document that must be one JSON
// value (a byte-order mark and white space around it allowed); anything
// else is ErrCannotRedact.
func RedactDocument(doc []byte, fields [][]string) ([]byte, error) {
	doc = bytes.TrimPrefix(bytes.TrimSpace(doc), []byte("\ufeff"))
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: the answer is not JSON", ErrCannotRedact)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: the answer holds more than one JSON value", ErrCannotRedact)
	}
	for _, f := range fields {
		mask(v, f)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCannotRedact, err)
	}
	return b, nil
}

// mask replaces the value at path in v; arrays on the way are walked
// element by element.
func mask(v any, path []string) {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			mask(e, path)
		}
	case map[string]any:
		child, ok := x[path[0]]
		if !ok {
			return
		}
		if len(path) == 1 {
			x[path[0]] = Redacted
			return
		}
		mask(child, path[1:])
	}
}
