package audit_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/warden-run/warden/internal/audit"
)

func graphicOnly(t *testing.T, what, s string, keep ...rune) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Fatalf("%s is not UTF-8: %q", what, s)
	}
	for _, r := range s {
		if !unicode.IsGraphic(r) && !containsRune(keep, r) {
			t.Fatalf("%s carries %U: %q", what, r, s)
		}
	}
}

func containsRune(rs []rune, r rune) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

func TestVisible(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, in, want string }{
		{"plain text", "tools/call market/get_quote", "tools/call market/get_quote"},
		{"letters of any script", "données 株価 \u00a0€", "données 株価 \u00a0€"},
		{"a newline and a tab", "a\nb\tc", `a\x0ab\x09c`},
		{"a terminal escape sequence", "\x1b[2J\x1b]0;t\x07", `\x1b[2J\x1b]0;t\x07`},
		{"DEL and C1 controls", "\x7f\u0085\u009b", `\x7f\u0085\u009b`},
		{"bidirectional and zero-width", "a\u202eb\u2066c\u200bd\ufeff", `a\u202eb\u2066c\u200bd\ufeff`},
		{"line and paragraph separators", "\u2028\u2029", `\u2028\u2029`},
		{"beyond the BMP", "\U000e0001😀", `\U000e0001😀`},
		{"bytes that are not UTF-8", "a\xffb\xed\xa0\x80", `a\xffb\xed\xa0\x80`},
		{"a backslash stays", `C:\dir`, `C:\dir`},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if got := audit.Visible(c.in); got != c.want {
				t.Fatalf("Visible(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

// Whatever an agent writes, Visible gives graphic characters only, and
// changes nothing that was graphic already.
func FuzzVisible(f *testing.F) {
	for _, s := range []string{"", "tools/call", "a\nb", "\x1b[2J", "\xff\xfe", "a\u202eb", "\U000e0001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v := audit.Visible(s)
		graphicOnly(t, "Visible", v)
		graphic := utf8.ValidString(s)
		for _, r := range s {
			graphic = graphic && unicode.IsGraphic(r)
		}
		if graphic != (v == s) {
			t.Fatalf("Visible(%q) = %q", s, v)
		}
	})
}

// VisibleJSON keeps the JSON value and leaves only graphic characters
// (and the newlines and tabs between values).
func FuzzVisibleJSON(f *testing.F) {
	for _, s := range []string{"tools/call", "a\u0085b", "\x7f", "a\u202e\u200bb", "\U000e0001\U000f0000", "\xff", "a\nb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v := map[string]any{"action": s, "reasons": []any{s}}
		canonical, err := audit.AppendCanonical(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		indented, err := json.MarshalIndent(v, "", "\t")
		if err != nil {
			t.Fatal(err)
		}
		for name, doc := range map[string][]byte{"canonical": canonical, "indented": indented} {
			out := audit.VisibleJSON(doc)
			graphicOnly(t, name, string(out), '\n', '\t')
			var got, want any
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%s %q: %v", name, out, err)
			}
			json.Unmarshal(doc, &want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: %q is not %q", name, out, doc)
			}
		}
	})
}
