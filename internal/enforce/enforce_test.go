package enforce_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/warden-run/warden/internal/enforce"
)

// Redaction fails closed: an obligation that is not a list of field
// paths, or text that starts as JSON but is not one JSON value, is an
// error.
func TestRedaction(t *testing.T) {
	t.Parallel()
	for _, ob := range []map[string]any{{"redact": "ssn"}, {"redact": []any{"ssn", 7}}, {"redact": []any{""}}} {
		if _, err := enforce.Redactions(ob); !errors.Is(err, enforce.ErrCannotRedact) {
			t.Errorf("obligation %v: %v", ob, err)
		}
	}
	fields, err := enforce.Redactions(map[string]any{"redact": []any{"ssn", "card.number"}})
	if err != nil || len(fields) != 2 {
		t.Fatalf("%v %v", fields, err)
	}
	if f, err := enforce.Redactions(map[string]any{}); err != nil || f != nil {
		t.Fatalf("no obligation: %v %v", f, err)
	}
	for _, doc := range []string{`{"ssn":"1"} {"ssn":"2"}`, `{"ssn":"1"`, "\ufeff[{\"ssn\":\"1\"}] x"} {
		if out, err := enforce.RedactDocument([]byte(doc), fields); !errors.Is(err, enforce.ErrCannotRedact) {
			t.Errorf("%q: %q %v", doc, out, err)
		}
	}
	if out, err := enforce.RedactDocument([]byte("\ufeff {\"ssn\":\"1\",\"card\":{\"number\":\"4111\"}}"), fields); err != nil || strings.Contains(string(out), "4111") || strings.Contains(string(out), `"1"`) {
		t.Errorf("JSON with a byte-order mark: %q %v", out, err)
	}
	if _, err := enforce.RedactDocument([]byte("the ssn is 1"), fields); !errors.Is(err, enforce.ErrCannotRedact) {
		t.Errorf("a document that is not JSON: %v", err)
	}
}
