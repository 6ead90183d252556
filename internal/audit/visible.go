package audit

import (
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Agents choose much of what an entry says (actions, resource ids,
// reasons). Wherever Warden shows entries as text (the CLI, syslog, CEF)
// they hold only graphic characters: a control character (a newline, an
// escape sequence for a terminal), a line or paragraph separator, a format
// character (a bidirectional override, a zero-width space) or a byte that
// is not UTF-8 is written as an escape. One rule, here, for every reader.

// Visible returns s with every rune that is not graphic written as an
// escape: \xNN for an ASCII control character or a byte that is not
// UTF-8, \uNNNN (\UNNNNNNNN beyond the BMP) for any other. A string of
// graphic characters comes back as it is. A backslash is not escaped:
// the result is for reading, not for decoding.
func Visible(s string) string {
	i := graphicPrefix(s)
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	b.WriteString(s[:i])
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			writeHex(&b, `\x`, uint32(s[i]), 2)
		case unicode.IsGraphic(r):
			b.WriteString(s[i : i+size])
		case r < utf8.RuneSelf:
			writeHex(&b, `\x`, uint32(r), 2)
		case r <= 0xFFFF:
			writeHex(&b, `\u`, uint32(r), 4)
		default:
			writeHex(&b, `\U`, uint32(r), 8)
		}
		i += size
	}
	return b.String()
}

// VisibleJSON returns a JSON document with every rune of its strings that
// is not graphic written as a JSON \u escape (a surrogate pair beyond the
// BMP): the same JSON value, in which nothing can drive a terminal or
// reorder what a reader sees. Newlines and tabs are kept, as the
// whitespace between values they are in valid JSON. The canonical form
// already escapes the controls below U+0020 and the line and paragraph
// separators; DEL, the C1 controls and format characters it leaves raw.
// A document without them, nearly any, comes back as it is.
func VisibleJSON(doc []byte) []byte {
	i := 0
	for i < len(doc) {
		if c := doc[i]; c >= 0x20 && c < 0x7f || c == '\n' || c == '\t' {
			i++
			continue
		}
		r, size := utf8.DecodeRune(doc[i:])
		if (r == utf8.RuneError && size == 1) || !unicode.IsGraphic(r) {
			break
		}
		i += size
	}
	if i == len(doc) {
		return doc
	}
	var b strings.Builder
	b.Grow(len(doc) + 16)
	b.Write(doc[:i])
	for i < len(doc) {
		r, size := utf8.DecodeRune(doc[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\ufffd`)
		case r == '\n' || r == '\t' || unicode.IsGraphic(r):
			b.Write(doc[i : i+size])
		case r > 0xFFFF:
			hi, lo := utf16.EncodeRune(r)
			writeHex(&b, `\u`, uint32(hi), 4)
			writeHex(&b, `\u`, uint32(lo), 4)
		default:
			writeHex(&b, `\u`, uint32(r), 4)
		}
		i += size
	}
	return []byte(b.String())
}

// graphicPrefix is the length of the longest prefix of s that holds only
// graphic characters.
func graphicPrefix(s string) int {
	i := 0
	for i < len(s) {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || !unicode.IsGraphic(r) {
			return i
		}
		i += size
	}
	return i
}

func writeHex(b *strings.Builder, prefix string, v uint32, digits int) {
	b.WriteString(prefix)
	for shift := (digits - 1) * 4; shift >= 0; shift -= 4 {
		b.WriteByte(hexDigits[(v>>shift)&0xF])
	}
}
