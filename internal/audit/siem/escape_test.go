package siem

import (
	"testing"
	"unicode"
	"unicode/utf8"
)

// Whatever an agent writes, a structured data value or a CEF field holds
// only graphic characters, and different texts stay different.
func FuzzFieldEscapes(f *testing.F) {
	for _, s := range []string{"", "tools/call", "a\nb", "\x1b[2J", "\xff\xfe", "a\u202eb", `\x1b`, `a"]\=|`} {
		f.Add(s, "other")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		for name, esc := range map[string]func(string) string{"structured data": sdEscape, "CEF extension": cefExt} {
			ea, eb := esc(a), esc(b)
			if !utf8.ValidString(ea) {
				t.Fatalf("%s: %q is not UTF-8", name, ea)
			}
			for _, r := range ea {
				if !unicode.IsGraphic(r) {
					t.Fatalf("%s of %q carries %U", name, a, r)
				}
			}
			if a != b && ea == eb {
				t.Fatalf("%s: %q and %q escape alike: %q", name, a, b, ea)
			}
		}
	})
}
