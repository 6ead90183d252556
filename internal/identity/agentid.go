package identity

import (
	"errors"
	"fmt"
	"strings"
)

// AgentIDScheme is the URI scheme of every agent identity.
const AgentIDScheme = "ai-agent://"

// MaxAgentIDLen is the longest agent id accepted, in bytes.
const MaxAgentIDLen = 255

// ErrInvalidAgentID is wrapped by every error ParseAgentID returns.
var ErrInvalidAgentID = errors.New("invalid agent id")

// AgentID is a parsed, validated agent identity of the form
// ai-agent://<trust-domain>/<segment>/.../<name>. The zero value is not a valid id.
type AgentID struct {
	s     string // the whole id
	tdEnd int    // index in s just past the trust domain
}

// ParseAgentID validates s exactly as the agent identity contract says:
// the ai-agent:// scheme, a trust domain and at least one path segment,
// each made of lower-case letters, digits, '-', '_' and '.', none empty,
// "." or "..", and at most MaxAgentIDLen bytes in all. Nothing is normalised:
// an id that is not already in canonical form is refused.
func ParseAgentID(s string) (AgentID, error) {
	if len(s) > MaxAgentIDLen {
		return AgentID{}, fmt.Errorf("%w: %d bytes long, the limit is %d", ErrInvalidAgentID, len(s), MaxAgentIDLen)
	}
	if !strings.HasPrefix(s, AgentIDScheme) {
		return AgentID{}, fmt.Errorf("%w: %q does not start with %q", ErrInvalidAgentID, truncate(s), AgentIDScheme)
	}
	rest := s[len(AgentIDScheme):]
	tdEnd := -1
	for i, seg := 0, 0; ; seg++ {
		j := strings.IndexByte(rest[i:], '/')
		end := len(rest)
		if j >= 0 {
			end = i + j
		}
		if err := checkSegment(rest[i:end], seg); err != nil {
			return AgentID{}, err
		}
		if seg == 0 {
			tdEnd = len(AgentIDScheme) + end
		}
		if j < 0 {
			if seg == 0 {
				return AgentID{}, fmt.Errorf("%w: %q has a trust domain but no agent path after it", ErrInvalidAgentID, truncate(s))
			}
			break
		}
		i = end + 1
	}
	return AgentID{s: s, tdEnd: tdEnd}, nil
}

// MustParseAgentID is ParseAgentID for constants in tests and examples; it panics on error.
func MustParseAgentID(s string) AgentID {
	id, err := ParseAgentID(s)
	if err != nil {
		panic(err)
	}
	return id
}

func checkSegment(seg string, n int) error {
	what := "path segment"
	if n == 0 {
		what = "trust domain"
	}
	switch seg {
	case "":
		return fmt.Errorf("%w: empty %s (segment %d)", ErrInvalidAgentID, what, n)
	case ".", "..":
		return fmt.Errorf("%w: %s %q is not allowed", ErrInvalidAgentID, what, seg)
	}
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') || c == '-' || c == '_' || c == '.' {
			continue
		}
		return fmt.Errorf("%w: %s %q has the character %q at byte %d; only a-z, 0-9, '-', '_' and '.' are allowed",
			ErrInvalidAgentID, what, truncate(seg), c, i)
	}
	return nil
}

func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// String returns the id as it was parsed.
func (id AgentID) String() string { return id.s }

// IsZero reports whether id is the zero value.
func (id AgentID) IsZero() bool { return id.s == "" }

// TrustDomain returns the trust domain, such as "prod".
func (id AgentID) TrustDomain() string {
	if id.s == "" {
		return ""
	}
	return id.s[len(AgentIDScheme):id.tdEnd]
}

// Path returns the segments after the trust domain, such as ["finance", "trading-optimizer"].
func (id AgentID) Path() []string {
	if id.s == "" {
		return nil
	}
	return strings.Split(id.s[id.tdEnd+1:], "/")
}

// Name returns the last path segment.
func (id AgentID) Name() string {
	return id.s[strings.LastIndexByte(id.s, '/')+1:]
}

// MarshalText implements encoding.TextMarshaler.
func (id AgentID) MarshalText() ([]byte, error) { return []byte(id.s), nil }

// UnmarshalText implements encoding.TextUnmarshaler and validates the id.
func (id *AgentID) UnmarshalText(b []byte) error {
	p, err := ParseAgentID(string(b))
	if err != nil {
		return err
	}
	*id = p
	return nil
}

// ValidateAgentPattern checks a pattern for MatchAgentPattern: an agent id,
// or an id prefix of at least a trust domain followed by "/*".
func ValidateAgentPattern(p string) error {
	if prefix, ok := strings.CutSuffix(p, "/*"); ok {
		if _, err := ParseAgentID(prefix + "/x"); err != nil {
			return fmt.Errorf("pattern %q: the part before /* must be ai-agent://<trust-domain>[/<segment>...]: %w", p, err)
		}
		return nil
	}
	if _, err := ParseAgentID(p); err != nil {
		return fmt.Errorf("pattern %q: %w", p, err)
	}
	return nil
}

// MatchAgentPattern reports whether id matches pattern, which is either an
// exact agent id or an id prefix ending in "/*" that matches every agent
// below it (ai-agent://prod/finance/* matches ai-agent://prod/finance/a/b).
func MatchAgentPattern(pattern string, id AgentID) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok && strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(id.s, prefix) && len(id.s) > len(prefix)
	}
	return pattern == id.s
}
