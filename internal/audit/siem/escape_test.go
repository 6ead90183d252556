package siem

import (
	"encoding/json"
	"reflect"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/warden-run/warden/internal/audit"
)

func graphicOnly(t *testing.T, what, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Fatalf("%s is not UTF-8: %q", what, s)
	}
	for _, r := range s {
		if !unicode.IsGraphic(r) {
			t.Fatalf("%s carries %U: %q", what, r, s)
		}
	}
}

// Whatever an agent writes, a text field holds only graphic characters,
// and different texts stay different.
func FuzzVisible(f *testing.F) {
	for _, s := range []string{"", "tools/call", "a\nb", "\x1b[2J", "\xff\xfe", "a\u202eb", "\U000e0001", `\x1b`} {
		f.Add(s, "other")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		va := visible(a)
		graphicOnly(t, "visible", va)
		if isVisible(a) != (va == a) {
			t.Fatalf("isVisible(%q) = %v, visible gives %q", a, isVisible(a), va)
		}
		for _, esc := range []func(string) string{sdEscape, cefExt} {
			ea, eb := esc(a), esc(b)
			graphicOnly(t, "escaped", ea)
			if a != b && ea == eb {
				t.Fatalf("%q and %q escape alike: %q", a, b, ea)
			}
		}
	})
}

// The syslog JSON body is the entry's JSON value, with only graphic
// characters.
func FuzzJSONVisible(f *testing.F) {
	for _, s := range []string{"tools/call", "a\u0085b", "\x7f", "a\u202e\u200bb", "\U000e0001\U000f0000", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		doc, err := audit.AppendCanonical(nil, map[string]any{"action": s, "reasons": []any{s}})
		if err != nil {
			t.Skip()
		}
		out := jsonVisible(doc)
		graphicOnly(t, "the body", string(out))
		var got, want any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%q: %v", out, err)
		}
		json.Unmarshal(doc, &want)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q is not %q", out, doc)
		}
	})
}
