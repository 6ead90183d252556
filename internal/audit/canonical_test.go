package audit

import (
	"bytes"
	"encoding/json"
	"testing"
)

var canonicalSeeds = []string{
	`{"a":1,"b":[true,false,null],"c":{"d":"e"}}`,
	`{"b":1,"a":2}`,
	`{"a": 1}`,
	`"tab\there \u0001 \u2028 \u00e9 é \\ \" / \/"`,
	`"\ufffd"`, "\"\xff\"", "\"\xef\xbf\xbd\"",
	`{"z":{"y":[1.0,-0,1e5,1E-5,12345678901234567890]}}`,
	`{"":1,"a":{},"b":[]}`,
	`{"a\u0041":1}`,
	`[1,2`, `01`, `-`, `1.`, `{"a":1,"a":2}`,
	"\"\b\f\"", `"\b\f\u001f\u007f"`, `"<&>"`,
}

// If the fast check calls a value canonical, decoding and encoding it
// again gives the same bytes.
func FuzzCanonical(f *testing.F) {
	for _, s := range canonicalSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !isCanonical(b) {
			return
		}
		slow, err := recanonicalize(b)
		if err != nil {
			t.Fatalf("%q passed the fast check but does not decode: %v", b, err)
		}
		if !bytes.Equal(slow, b) {
			t.Fatalf("%q passed the fast check, but its canonical form is %q", b, slow)
		}
	})
}

// AppendCanonical writes what the slow path would.
func FuzzAppendCanonical(f *testing.F) {
	for _, s := range canonicalSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) != nil {
			return
		}
		want, err := recanonicalize(b)
		if err != nil {
			return
		}
		got, err := AppendCanonical(nil, v)
		if err != nil {
			t.Fatalf("%q: %v", b, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%q: AppendCanonical wrote %q, want %q", b, got, want)
		}
		if !isCanonical(got) && !bytes.Contains(got, []byte(`\\`)) {
			t.Logf("%q is canonical but the fast check sends it the slow way", got)
		}
	})
}

func TestCanonicalFastPath(t *testing.T) {
	for s, want := range map[string]bool{
		`{"a":1,"b":[true,false,null],"c":{"d":"e"}}`: true,
		`{"b":1,"a":2}`:          false,
		`{"a": 1}`:               false,
		`"\u00e9"`:               false,
		`"é"`:                    true,
		`"\/"`:                   false,
		`"\u2028"`:               true,
		"\"\u2028\"":             false,
		`{"a":1,"a":2}`:          false,
		`"\u001f"`:               true,
		`"\u000a"`:               false,
		`"\n"`:                   true,
		`12345678901234567890.5`: true,
		`01`:                     false,
		"\"\xef\xbf\xbd\"":       true,
	} {
		if got := isCanonical([]byte(s)); got != want {
			t.Errorf("isCanonical(%s) = %v, want %v", s, got, want)
		}
	}
}
