package siem

import (
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Agents choose much of what an entry says (actions, resource ids,
// reasons), and a SIEM shows it to people and splits it into lines and
// fields. What Warden writes into a text format therefore holds only
// graphic characters: a control character (a newline, an escape sequence
// for a terminal), a line or paragraph separator, or a format character
// (a bidirectional override, a zero-width space) is written as an escape.

// visible returns s with every rune that is not graphic written as an
// escape: \xNN for an ASCII control character or a byte that is not UTF-8,
// \uNNNN (\UNNNNNNNN beyond the BMP) for any other.
func visible(s string) string {
	if isVisible(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			writeHex(&b, `\x`, uint32(s[i]), 2)
		case r < utf8.RuneSelf && !unicode.IsGraphic(r):
			writeHex(&b, `\x`, uint32(r), 2)
		case !unicode.IsGraphic(r) && r <= 0xFFFF:
			writeHex(&b, `\u`, uint32(r), 4)
		case !unicode.IsGraphic(r):
			writeHex(&b, `\U`, uint32(r), 8)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func isVisible(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || !unicode.IsGraphic(r) {
			return false
		}
		i += size
	}
	return true
}

func writeHex(b *strings.Builder, prefix string, v uint32, digits int) {
	b.WriteString(prefix)
	for shift := (digits - 1) * 4; shift >= 0; shift -= 4 {
		b.WriteByte(hexDigits[(v>>shift)&0xF])
	}
}

const hexDigits = "0123456789abcdef"

// jsonVisible returns a JSON document with every rune of its strings that
// is not graphic written as a \u escape (a surrogate pair beyond the BMP):
// the same JSON value, in which nothing can end a line, drive a terminal
// or reorder what a reader sees. The canonical form already escapes the
// controls below U+0020 and the line and paragraph separators; DEL, the C1
// controls and format characters it leaves raw. Documents without them,
// nearly all, come back as they are.
func jsonVisible(doc []byte) []byte {
	i := 0
	for i < len(doc) {
		if c := doc[i]; c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		r, size := utf8.DecodeRune(doc[i:])
		if !unicode.IsGraphic(r) || (r == utf8.RuneError && size == 1) {
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
		case unicode.IsGraphic(r):
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
