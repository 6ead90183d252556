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
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode"
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

func (v Value) key() string { return v.Kind + ":" + v.Norm }

// Limits of extraction: a huge string is read in part.
const (
	maxScan   = 64 << 10 // bytes of one string scanned
	maxValues = 512      // values kept from one string
	minText   = 24       // the shortest text fingerprinted
)

var (
	reEmail   = regexp.MustCompile(`(?i)[a-z0-9._%+\-]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,24}`)
	reURL     = regexp.MustCompile(`(?i)\bhttps?://[^\s"'<>()\[\]{}]+`)
	reDomain  = regexp.MustCompile(`(?i)\b(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+(?:com|org|net|io|dev|app|co|uk|de|fr|eu|ch|nl|info|biz|gov|edu|example|test|xyz|ru|cn)\b`)
	reIBAN    = regexp.MustCompile(`\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b`)
	rePhone   = regexp.MustCompile(`\+[0-9][0-9 ().\-]{6,20}[0-9]`)
	reAccount = regexp.MustCompile(`\b[0-9](?:[0-9 \-]{6,30})[0-9]\b`)
	reAmount  = regexp.MustCompile(`(?:[$€£¥]\s?)?\b[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?\b|(?:[$€£¥]\s?)?\b[0-9]+(?:\.[0-9]+)?\b`)
	reID      = regexp.MustCompile(`\b[A-Za-z]{1,12}[-_#]?[0-9][A-Za-z0-9\-_]{1,40}\b`)
	reFile    = regexp.MustCompile(`(?i)(?:/[\w.\-]+)+|\b[\w\-]+\.(?:pdf|txt|docx?|xlsx?|csv|pptx?|png|jpe?g|json|md|zip)\b`)
)

// FromString returns the values in s, each once, in the order found.
func FromString(s string) []Value {
	if len(s) > maxScan {
		s = s[:maxScan]
	}
	var out []Value
	seen := map[string]bool{}
	add := func(kind, norm string) {
		if norm == "" || len(out) >= maxValues {
			return
		}
		v := Value{kind, norm}
		if !seen[v.key()] {
			seen[v.key()] = true
			out = append(out, v)
		}
	}
	// Stronger matches first; a weaker match inside a stronger one (the
	// digits of an IBAN as an account, an e-mail's host as a bare domain)
	// is not a value of its own.
	var covered [][2]int
	inside := func(loc []int) bool {
		for _, c := range covered {
			if loc[0] < c[1] && c[0] < loc[1] {
				return true
			}
		}
		return false
	}
	each := func(re *regexp.Regexp, strong bool, fn func(string) bool) {
		for _, loc := range re.FindAllStringIndex(s, -1) {
			if inside(loc) {
				continue
			}
			if fn(s[loc[0]:loc[1]]) && strong {
				covered = append(covered, [2]int{loc[0], loc[1]})
			}
		}
	}
	each(reEmail, true, func(m string) bool {
		e := strings.ToLower(strings.Trim(m, "."))
		add(Email, e)
		add(Domain, domainOf(e[strings.LastIndexByte(e, '@')+1:]))
		return true
	})
	each(reURL, true, func(m string) bool {
		u, d := normURL(m)
		add(URL, u)
		add(Domain, d)
		return u != ""
	})
	each(reIBAN, true, func(m string) bool {
		iban := strings.ReplaceAll(m, " ", "")
		if !validIBAN(iban) {
			return false
		}
		add(IBAN, iban)
		return true
	})
	each(rePhone, true, func(m string) bool {
		d := digits(m)
		if len(d) < 7 || len(d) > 15 {
			return false
		}
		add(Phone, "+"+d)
		return true
	})
	each(reFile, true, func(m string) bool {
		add(ID, strings.ToLower(strings.TrimRight(m, ".")))
		return true
	})
	each(reDomain, true, func(m string) bool {
		add(Domain, domainOf(m))
		return true
	})
	each(reAccount, true, func(m string) bool {
		d := digits(m)
		if len(d) < 8 || len(d) > 20 {
			return false
		}
		add(Account, d)
		return true
	})
	each(reID, true, func(m string) bool {
		add(ID, strings.ToLower(m))
		return true
	})
	each(reAmount, false, func(m string) bool {
		add(Amount, normAmount(m))
		return true
	})
	for _, t := range fingerprints(s) {
		add(Text, t)
	}
	return out
}

// FromNumber returns the value of a JSON number.
func FromNumber(n string) []Value {
	if a := normAmount(n); a != "" {
		return []Value{{Amount, a}}
	}
	return nil
}

// FromJSON returns the values in a JSON-shaped value: its strings and
// numbers, at any depth (keys are not values).
func FromJSON(v any) []Value {
	var out []Value
	seen := map[string]bool{}
	var walk func(any)
	walk = func(v any) {
		if len(out) >= maxValues {
			return
		}
		var vs []Value
		switch x := v.(type) {
		case string:
			vs = FromString(x)
		case json.Number:
			vs = FromNumber(string(x))
		case float64:
			vs = FromNumber(strconv.FormatFloat(x, 'f', -1, 64))
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
		for _, v := range vs {
			if !seen[v.key()] && len(out) < maxValues {
				seen[v.key()] = true
				out = append(out, v)
			}
		}
	}
	walk(v)
	return out
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
	s = strings.ReplaceAll(s, ",", "")
	r, ok := new(big.Rat).SetString(s)
	if !ok || r.Sign() < 0 {
		return ""
	}
	if r.IsInt() && r.Cmp(big.NewRat(10, 1)) < 0 {
		return ""
	}
	out := r.FloatString(6)
	if strings.Contains(out, ".") {
		out = strings.TrimRight(strings.TrimRight(out, "0"), ".")
	}
	return out
}

// validIBAN checks an IBAN's length and ISO 7064 mod-97 check digits.
func validIBAN(s string) bool {
	if len(s) < 15 || len(s) > 34 {
		return false
	}
	r := s[4:] + s[:4]
	var n big.Int
	var b strings.Builder
	for _, c := range r {
		switch {
		case c >= '0' && c <= '9':
			b.WriteRune(c)
		case c >= 'A' && c <= 'Z':
			b.WriteString(strconv.Itoa(int(c-'A') + 10))
		default:
			return false
		}
	}
	if _, ok := n.SetString(b.String(), 10); !ok {
		return false
	}
	return new(big.Int).Mod(&n, big.NewInt(97)).Int64() == 1
}

// fingerprints are the hashes of a text's normalised sentences (and of the
// whole text): a sentence copied from a read into an argument (a message
// body, a note) is found, whatever its case, spacing or punctuation.
func fingerprints(s string) []string {
	var out []string
	add := func(t string) {
		if n := normText(t); len(n) >= minText {
			sum := sha256.Sum256([]byte(n))
			out = append(out, hex.EncodeToString(sum[:8]))
		}
	}
	add(s)
	for _, part := range strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '!' || r == '?' || r == '\n' }) {
		if len(out) >= 64 {
			break
		}
		add(part)
	}
	return out
}

func normText(s string) string {
	var b strings.Builder
	space := false
	for _, r := range strings.ToLower(s) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			if space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteRune(r)
			space = false
		default:
			space = true
		}
	}
	return b.String()
}
