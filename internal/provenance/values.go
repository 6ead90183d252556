// Package provenance follows the values an agent reads to the actions it
// takes. An enforcement point records each result it relays as a read: its
// upstream, tool, trust and audit index, and the values in it that could
// steer an action (e-mail addresses, URLs and domains, IBANs and account
// numbers, amounts, phone numbers, record and file ids, fingerprints of
// free text). When the agent then acts, each argument's values are looked
// up among the reads and the user's own inputs: policy sees where every
// argument came from, and the decision's audit entry links to the reads.
package provenance

import (
	"encoding/json"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Kinds of value.
const (
	Email   = "email"
	URL     = "url"
	Domain  = "domain"
	IBAN    = "iban"
	Account = "account"
	Amount  = "amount"
	Phone   = "phone"
	ID      = "id"
	Text    = "text"
)

// Value is one normalised value: the same value written two ways (case,
// spaces, thousands separators) normalises to the same.
type Value struct {
	Kind string `json:"kind"`
	Norm string `json:"value"`
}

// Limits of extraction: a huge string is read in part.
const (
	maxScan   = 64 << 10  // bytes of one string scanned
	maxValues = 512       // values kept from one string
	minText   = 24        // the shortest text fingerprinted
	maxRead   = 256 << 10 // bytes of text scanned in one JSON value
)

// FromString returns the values in s, each once, in the order found. It
// reads s once, token by token (a regular expression per kind cost a
// millisecond for 2 KB): tokens are split at white space and at the
// punctuation that cannot be inside a value, and each is classified; an
// IBAN or phone number written in groups is put back together from its
// tokens.
func FromString(s string) []Value {
	var x extractor
	x.scan(s)
	return x.out
}

// scan adds the values of s.
func (x *extractor) scan(s string) {
	if len(s) > maxScan {
		s = s[:maxScan]
	}
	s = fold(s)
	toks := tokens(s)
	for i := 0; i < len(toks); i++ {
		if n := x.grouped(toks, i); n > 0 {
			i += n - 1
			continue
		}
		x.token(toks[i])
	}
	for _, t := range fingerprints(s) {
		x.add(Text, t)
	}
}

// extractor collects values, each once. Most texts hold a few: they are
// told apart by a look through the list, and by a map only from
// seenByMap values on (a map for every string of every result was most
// of extraction's allocations).
type extractor struct {
	out  []Value
	seen map[Value]bool
}

const seenByMap = 16

func (x *extractor) add(kind, norm string) {
	if norm == "" || len(x.out) >= maxValues {
		return
	}
	v := Value{kind, norm}
	if x.seen == nil {
		if slices.Contains(x.out, v) {
			return
		}
		x.out = append(x.out, v)
		if len(x.out) == seenByMap {
			x.seen = make(map[Value]bool, 2*seenByMap)
			for _, o := range x.out {
				x.seen[o] = true
			}
		}
		return
	}
	if !x.seen[v] {
		x.seen[v] = true
		x.out = append(x.out, v)
	}
}

// tokens splits s at white space and at quotes, brackets, commas followed
// by a space, and other separators; it keeps '.', '@', '/', ':', '-', '_',
// '+', ',' (a thousands separator), '$' and the like inside a token, and
// trims trailing sentence punctuation.
func tokens(s string) []string {
	var out []string
	start := -1
	flush := func(end int) {
		if start >= 0 {
			t := s[start:end]
			for t != "" && strings.IndexByte(".,;:!?", t[len(t)-1]) >= 0 {
				t = t[:len(t)-1]
			}
			for t != "" && strings.IndexByte("([{<", t[0]) >= 0 {
				t = t[1:]
			}
			if t != "" {
				out = append(out, t)
			}
			start = -1
		}
	}
	for i, r := range s {
		sep := unicode.IsSpace(r)
		switch r {
		case '"', '\'', '`', '(', ')', '[', ']', '{', '}', '<', '>', '|', ';', '*':
			sep = true
		case ',':
			sep = i+1 < len(s) && (s[i+1] == ' ' || s[i+1] == '\n')
		}
		if sep {
			flush(i)
		} else if start < 0 {
			start = i
		}
	}
	flush(len(s))
	return out
}

// grouped reads an IBAN or a phone number written in groups, starting at
// toks[i], and returns how many tokens it took (0: none).
func (x *extractor) grouped(toks []string, i int) int {
	t := toks[i]
	// An IBAN: two letters, two digits, then groups (of four as printed,
	// of up to twelve as typed; in any case; groups joined by '-' are one
	// token). Every prefix that passes the check digits is a value, so a
	// word after the number that happens to extend it to another valid
	// IBAN does not hide the real one.
	if ibanStart(t) && len(t) >= 15 && strings.IndexByte(t, '-') > 0 {
		if u := strings.ToUpper(strings.ReplaceAll(t, "-", "")); len(u) <= 34 && alnumUpper(u) && validIBAN(u) {
			x.add(IBAN, u)
			return 1
		}
	}
	if ibanStart(t) && alnumUpper(strings.ToUpper(t)) {
		t = strings.ToUpper(t)
		iban := t
		took := 0
		for j := i; j < len(toks) && len(iban) <= 34; j++ {
			if j > i {
				g := strings.ToUpper(toks[j])
				if !alnumUpper(g) || len(g) > 12 {
					break
				}
				iban += g
			}
			if len(iban) >= 15 && len(iban) <= 34 && validIBAN(iban) {
				x.add(IBAN, iban)
				took = j - i + 1
			}
		}
		if took > 0 {
			return took
		}
	}
	// A phone number: "+" and digits, possibly in groups.
	if strings.HasPrefix(t, "+") && len(t) > 1 && isDigit(t[1]) {
		d := digits(t)
		j := i + 1
		for ; j < len(toks) && len(d) < 15 && phoneGroup(toks[j]); j++ {
			d += digits(toks[j])
		}
		if len(d) >= 7 && len(d) <= 15 {
			x.add(Phone, "+"+d)
			return j - i
		}
	}
	// An account number in groups of digits ("0532 0130 0042").
	if allDigits(t) && len(t) >= 3 && len(t) <= 6 && i+1 < len(toks) && allDigits(toks[i+1]) && len(toks[i+1]) >= 3 && len(toks[i+1]) <= 6 {
		d := t
		j := i + 1
		for ; j < len(toks) && allDigits(toks[j]) && len(toks[j]) >= 3 && len(toks[j]) <= 6 && len(d) < 20; j++ {
			d += toks[j]
		}
		if len(d) >= 8 && len(d) <= 20 {
			x.add(Account, d)
			return j - i
		}
	}
	return 0
}

// token classifies one token.
func (x *extractor) token(t string) {
	lower := strings.ToLower(t)
	switch {
	case strings.HasPrefix(lower, "http://") || strings.HasPrefix(lower, "https://"):
		if u, d := normURL(t); u != "" {
			x.add(URL, u)
			x.add(Domain, d)
		}
		return
	case strings.Count(t, "@") == 1:
		local, host, _ := strings.Cut(lower, "@")
		if local != "" && isDomain(host, true) && strings.IndexFunc(local, func(r rune) bool { return !isEmailChar(r) }) < 0 {
			x.add(Email, local+"@"+host)
			x.add(Domain, domainOf(host))
			return
		}
	case strings.HasPrefix(t, "+") && len(t) > 1 && isDigit(t[1]):
		if d := digits(t); len(d) >= 7 && len(d) <= 15 {
			x.add(Phone, "+"+d)
			return
		}
	}
	if strings.Contains(t, "/") {
		p := strings.TrimSuffix(strings.TrimPrefix(lower, "./"), "/")
		if strings.HasPrefix(t, "/") || hasFileExt(p) || strings.HasPrefix(lower, "./") {
			x.add(ID, p)
		}
		return
	}
	if hasFileExt(lower) {
		x.add(ID, strings.TrimPrefix(lower, "./"))
		return
	}
	if isDomain(lower, false) || (strings.Count(lower, ".") >= 2 && isDomain(lower, true)) {
		x.add(Domain, domainOf(lower))
		return
	}
	if !hostAddress(lower) {
		// not an address: parsing it would allocate an error
	} else if ip, err := netip.ParseAddr(strings.Trim(lower, "[]")); err == nil && (ip.Is4() || strings.Contains(lower, ":")) {
		x.add(Domain, ip.String()) // a host by its address
		return
	}
	if eu, ok := europeanAmount(t); ok { // 9.500,00
		if a := normAmount(eu); a != "" {
			x.add(Amount, a)
		}
		return
	}
	if d := digits(t); d != "" {
		switch {
		case amountLike(t):
			if a := normAmount(t); a != "" {
				x.add(Amount, a)
			}
			if plain := strings.Trim(t, "$€£¥"); allDigits(plain) && len(plain) >= 8 && len(plain) <= 20 {
				x.add(Account, plain)
			}
		case accountLike(t) && len(d) >= 8 && len(d) <= 20:
			x.add(Account, d)
		case idLike(t):
			x.add(ID, lower)
		}
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }

func alnumUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isUpper(s[i]) && !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

func phoneGroup(s string) bool {
	return s != "" && strings.IndexFunc(s, func(r rune) bool { return !(r >= '0' && r <= '9' || r == '-' || r == '.') }) < 0 && len(digits(s)) > 0
}

// amountLike: digits with at most a currency sign, thousands separators
// and one decimal point ("1,234.50", "$99", "1250").
func amountLike(t string) bool {
	t = strings.TrimLeft(t, "$€£¥")
	if t == "" || !isDigit(t[0]) {
		return false
	}
	dot := false
	for i := 0; i < len(t); i++ {
		switch c := t[i]; {
		case isDigit(c):
		case c == ',': // a thousands separator: three digits follow
			if i+3 >= len(t) || !isDigit(t[i+1]) || !isDigit(t[i+2]) || !isDigit(t[i+3]) || dot {
				return false
			}
		case c == '.':
			if dot {
				return false
			}
			dot = true
		default:
			return false
		}
	}
	return true
}

// accountLike: digit groups joined by '-' ("0532-0130-0042").
func accountLike(t string) bool {
	return strings.IndexFunc(t, func(r rune) bool { return !(r >= '0' && r <= '9' || r == '-') }) < 0
}

// idLike: letters and digits, with '-', '_', '#' or '.' between
// ("INV-2291", "C-100234", "1.2.840.4471", "study-7").
func idLike(t string) bool {
	letters := false
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case isDigit(c):
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			letters = true
		case c == '-' || c == '_' || c == '#' || c == '.':
		default:
			return false
		}
	}
	return letters || strings.Count(t, ".") >= 2
}

func isEmailChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("._%+-", r)
}

// tlds are the top-level domains a bare domain (without a scheme or an
// "@") is recognised by.
var tlds = map[string]bool{"com": true, "org": true, "net": true, "io": true, "dev": true, "app": true, "co": true, "uk": true,
	"de": true, "fr": true, "eu": true, "ch": true, "nl": true, "info": true, "biz": true, "gov": true, "edu": true,
	"example": true, "test": true, "xyz": true, "ru": true, "cn": true}

// isDomain: labels of letters, digits and '-', two or more, ending in a
// known top-level domain, or (anyTLD, after an "@") in any alphabetic one.
func isDomain(h string, anyTLD bool) bool {
	dot := strings.LastIndexByte(h, '.')
	if dot <= 0 || dot == len(h)-1 {
		return false
	}
	labelStart := 0
	for i := 0; i <= len(h); i++ {
		if i < len(h) && h[i] != '.' {
			if c := h[i]; !(c >= 'a' && c <= 'z' || isDigit(c) || c == '-') {
				return false
			}
			continue
		}
		l := h[labelStart:i]
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		labelStart = i + 1
	}
	tld := h[dot+1:]
	if anyTLD {
		return len(tld) >= 2 && strings.IndexFunc(tld, func(r rune) bool { return r < 'a' || r > 'z' }) < 0
	}
	return tlds[tld]
}

var fileExts = []string{".pdf", ".txt", ".doc", ".docx", ".xls", ".xlsx", ".csv", ".ppt", ".pptx", ".png", ".jpg", ".jpeg", ".json", ".md", ".zip"}

func hasFileExt(s string) bool {
	if strings.IndexByte(s, '.') < 0 {
		return false
	}
	for _, e := range fileExts {
		if strings.HasSuffix(s, e) && len(s) > len(e) {
			return true
		}
	}
	return false
}

// FromNumber returns the value of a JSON number ("9.5e3" is 9500).
func FromNumber(n string) []Value {
	if strings.ContainsAny(n, "eE") {
		f, err := strconv.ParseFloat(n, 64)
		if err != nil || f < 0 || f > 1e15 {
			return nil
		}
		n = strconv.FormatFloat(f, 'f', -1, 64)
	}
	if a := normAmount(n); a != "" {
		return []Value{{Amount, a}}
	}
	return nil
}

// FromJSON returns the values in a JSON-shaped value: its strings and
// numbers, at any depth (keys are not values).
func FromJSON(v any) []Value {
	var x extractor
	budget := maxRead // bytes of text scanned in all
	var walk func(any)
	walk = func(v any) {
		if len(x.out) >= maxValues || budget <= 0 {
			return
		}
		switch e := v.(type) {
		case string:
			if len(e) > budget {
				e = e[:budget]
			}
			budget -= len(e)
			x.scan(e)
		case json.Number:
			for _, n := range FromNumber(string(e)) {
				x.add(n.Kind, n.Norm)
			}
		case float64:
			for _, n := range FromNumber(strconv.FormatFloat(e, 'f', -1, 64)) {
				x.add(n.Kind, n.Norm)
			}
		case map[string]any:
			for k, m := range e {
				walk(k) // an address can be a key
				walk(m)
			}
		case []any:
			for _, m := range e {
				walk(m)
			}
		}
	}
	walk(v)
	return x.out
}

func domainOf(d string) string {
	d = strings.TrimSuffix(strings.ToLower(d), ".")
	return strings.TrimPrefix(d, "www.")
}

// normURL is a URL as host and path (scheme, case of the host, a leading
// www., a trailing slash and trailing punctuation do not matter), and its
// domain.
func normURL(s string) (string, string) {
	s = strings.TrimRight(s, ".,;:!?")
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "", ""
	}
	host := domainOf(u.Hostname())
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	n := host + path
	if u.RawQuery != "" {
		n += "?" + u.RawQuery
	}
	return n, host
}

func digits(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// normAmount writes a number without separators, currency or needless
// zeros ("1,234.50" and "$1234.5" are "1234.5"). Numbers below 10 without
// a fraction are too common to say anything, and are not values.
func normAmount(s string) string {
	s = strings.TrimLeft(s, "$€£¥ ")
	if strings.IndexByte(s, ',') >= 0 {
		s = strings.ReplaceAll(s, ",", "")
	}
	if s == "" || strings.IndexFunc(s, func(r rune) bool { return !(r >= '0' && r <= '9' || r == '.') }) >= 0 || strings.Count(s, ".") > 1 {
		return ""
	}
	intPart, frac, _ := strings.Cut(s, ".")
	intPart = strings.TrimLeft(intPart, "0")
	frac = strings.TrimRight(frac, "0")
	if intPart == "" {
		intPart = "0"
	}
	if frac == "" && len(intPart) == 1 {
		return "" // 0 to 9: too common to say anything
	}
	if frac == "" {
		return intPart
	}
	if len(frac) > 6 {
		frac = frac[:6]
	}
	return intPart + "." + frac
}

// validIBAN checks an IBAN's length and ISO 7064 mod-97 check digits,
// computed on the fly (letters count as two digits, A = 10).
func validIBAN(s string) bool {
	if len(s) < 15 || len(s) > 34 {
		return false
	}
	rem := 0
	for i := range len(s) {
		c := s[(i+4)%len(s)]
		switch {
		case isDigit(c):
			rem = (rem*10 + int(c-'0')) % 97
		case isUpper(c):
			rem = (rem*100 + int(c-'A') + 10) % 97
		default:
			return false
		}
	}
	return rem == 1
}

// fingerprints are the hashes of a text's normalised sentences (and of the
// whole text): a sentence copied from a read into an argument (a message
// body, a note) is found, whatever its case, spacing or punctuation. One
// pass, no copies: 64-bit FNV-1a over the normalised bytes.
func fingerprints(s string) []string {
	const offset, prime = 14695981039346656037, 1099511628211
	var out []string
	whole, sent := uint64(offset), uint64(offset)
	wholeLen, sentLen := 0, 0
	wholeSpace, sentSpace := false, false
	endSentence := func() {
		if sentLen >= minText && len(out) < 64 {
			out = append(out, strconv.FormatUint(sent, 36))
		}
		sent, sentLen, sentSpace = offset, 0, false
	}
	var buf [utf8.UTFMax]byte
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= '0' && r <= '9'), r >= 'A' && r <= 'Z', r >= utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			r = unicode.ToLower(r)
			n := utf8.EncodeRune(buf[:], r)
			if wholeSpace && wholeLen > 0 {
				whole = (whole ^ ' ') * prime
				wholeLen++
			}
			if sentSpace && sentLen > 0 {
				sent = (sent ^ ' ') * prime
				sentLen++
			}
			for _, b := range buf[:n] {
				whole = (whole ^ uint64(b)) * prime
				sent = (sent ^ uint64(b)) * prime
			}
			wholeLen += n
			sentLen += n
			wholeSpace, sentSpace = false, false
		case r == '.' || r == '!' || r == '?' || r == '\n':
			endSentence()
			wholeSpace = true
		default:
			wholeSpace, sentSpace = true, true
		}
	}
	wholeSentence := sentLen == wholeLen // the text is one sentence: one hash
	endSentence()
	if wholeLen >= minText && !wholeSentence {
		out = append(out, strconv.FormatUint(whole, 36))
	}
	return out
}

// europeanAmount reads an amount written with '.' between thousands and
// ',' before the cents ("9.500,00", "€1.234,5") as "9500.00".
func europeanAmount(t string) (string, bool) {
	t = strings.TrimLeft(t, "$€£¥")
	intPart, frac, ok := strings.Cut(t, ",")
	if !ok || frac == "" || len(frac) > 2 || !allDigits(frac) || !strings.Contains(intPart, ".") {
		return "", false
	}
	groups := strings.Split(intPart, ".")
	if len(groups[0]) < 1 || len(groups[0]) > 3 || !allDigits(groups[0]) {
		return "", false
	}
	for _, g := range groups[1:] {
		if len(g) != 3 || !allDigits(g) {
			return "", false
		}
	}
	return strings.Join(groups, "") + "." + frac, true
}

// fold removes the characters that do not show (zero-width spaces and
// joiners, soft hyphens, byte order marks) and writes full-width Latin
// letters and digits as ASCII: "drop\u200b@evil.example" and
// "ｄｒｏｐ@evil.example" are drop@evil.example. ASCII text is returned as
// it is.
func fold(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r == '\u200b' || r == '\u200c' || r == '\u200d' || r == '\u2060' || r == '\ufeff' || r == '\u00ad':
			continue
		case r >= '\uff01' && r <= '\uff5e': // full-width ASCII
			r -= 0xfee0
		case r == '\u3000': // ideographic space
			r = ' '
		}
		b.WriteRune(r)
	}
	return b.String()
}

// hostAddress says whether t may be an IP address (digits and three dots,
// or hex digits and colons), before it is parsed as one.
func hostAddress(t string) bool {
	dots, colons := 0, 0
	for i := 0; i < len(t); i++ {
		switch c := t[i]; {
		case c == '.':
			dots++
		case c == ':':
			colons++
		case c == '[' || c == ']' || isDigit(c) || c >= 'a' && c <= 'f':
		default:
			return false
		}
	}
	return dots == 3 || colons >= 2
}

// ibanStart says whether t begins as an IBAN does: two letters, in any
// case, and two digits.
func ibanStart(t string) bool {
	letter := func(c byte) bool { return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' }
	return len(t) >= 4 && letter(t[0]) && letter(t[1]) && isDigit(t[2]) && isDigit(t[3])
}
