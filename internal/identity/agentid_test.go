package identity

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseAgentID(t *testing.T) {
	t.Parallel()
	valid := []struct {
		in   string
		td   string
		path []string
	}{
		{"ai-agent://prod/finance/trading-optimizer", "prod", []string{"finance", "trading-optimizer"}},
		{"ai-agent://dev/a", "dev", []string{"a"}},
		{"ai-agent://my.domain_1/x-y/z.v2/n_3", "my.domain_1", []string{"x-y", "z.v2", "n_3"}},
		{"ai-agent://p/" + strings.Repeat("a", MaxAgentIDLen-len("ai-agent://p/")), "p", []string{strings.Repeat("a", MaxAgentIDLen-len("ai-agent://p/"))}},
	}
	for _, c := range valid {
		t.Run("valid "+truncate(c.in), func(t *testing.T) {
			t.Parallel()
			id, err := ParseAgentID(c.in)
			if err != nil {
				t.Fatalf("ParseAgentID(%q) = %v", c.in, err)
			}
			if id.String() != c.in || id.TrustDomain() != c.td || !slices.Equal(id.Path(), c.path) {
				t.Fatalf("got %q td=%q path=%q", id, id.TrustDomain(), id.Path())
			}
			if id.Name() != c.path[len(c.path)-1] {
				t.Fatalf("Name() = %q", id.Name())
			}
		})
	}

	invalid := []struct {
		name, in, want string
	}{
		{"empty", "", "does not start with"},
		{"other scheme", "spiffe://prod/a", "does not start with"},
		{"upper-case scheme", "AI-AGENT://prod/a", "does not start with"},
		{"no path", "ai-agent://prod", "no agent path"},
		{"trailing slash", "ai-agent://prod/a/", "empty path segment"},
		{"empty trust domain", "ai-agent:///a", "empty trust domain"},
		{"empty segment", "ai-agent://prod//a", "empty path segment"},
		{"dot segment", "ai-agent://prod/./a", `"." is not allowed`},
		{"dot-dot segment", "ai-agent://prod/../a", `".." is not allowed`},
		{"dot-dot trust domain", "ai-agent://../a", `trust domain ".." is not allowed`},
		{"upper case", "ai-agent://prod/Finance", "'F'"},
		{"space", "ai-agent://prod/a b", "' '"},
		{"port", "ai-agent://prod:443/a", "':'"},
		{"userinfo", "ai-agent://u@prod/a", "'@'"},
		{"query", "ai-agent://prod/a?x=1", "'?'"},
		{"fragment", "ai-agent://prod/a#f", "'#'"},
		{"percent escape", "ai-agent://prod/a%2Fb", "'%'"},
		{"non-ascii", "ai-agent://prod/café", "'Ã'"},
		{"nul byte", "ai-agent://prod/a\x00", `'\x00'`},
		{"too long", "ai-agent://p/" + strings.Repeat("a", MaxAgentIDLen), "the limit is 255"},
	}
	for _, c := range invalid {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseAgentID(c.in)
			if !errors.Is(err, ErrInvalidAgentID) {
				t.Fatalf("ParseAgentID(%q) = %v, want ErrInvalidAgentID", c.in, err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
		})
	}
}

func TestMatchAgentPattern(t *testing.T) {
	t.Parallel()
	id := MustParseAgentID("ai-agent://prod/finance/trader")
	cases := []struct {
		pattern string
		want    bool
	}{
		{"ai-agent://prod/finance/trader", true},
		{"ai-agent://prod/finance/*", true},
		{"ai-agent://prod/*", true},
		{"ai-agent://prod/fin*", false},
		{"ai-agent://prod/finance/trader/*", false},
		{"ai-agent://staging/*", false},
		{"*", false},
		{"ai-agent://prod/finance/trade", false},
	}
	for _, c := range cases {
		if got := MatchAgentPattern(c.pattern, id); got != c.want {
			t.Errorf("MatchAgentPattern(%q) = %v, want %v", c.pattern, got, c.want)
		}
	}
}

func FuzzParseAgentID(f *testing.F) {
	for _, s := range []string{"ai-agent://prod/finance/x", "ai-agent://prod", "ai-agent://prod//x", "ai-agent://a/../b", "x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseAgentID(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidAgentID) {
				t.Fatalf("error not wrapping ErrInvalidAgentID: %v", err)
			}
			return
		}
		// Every accepted id round-trips and obeys the contract.
		if id.String() != s || len(s) > MaxAgentIDLen {
			t.Fatalf("accepted %q as %q", s, id)
		}
		segs := append([]string{id.TrustDomain()}, id.Path()...)
		if len(segs) < 2 || AgentIDScheme+strings.Join(segs, "/") != s {
			t.Fatalf("segments %q do not rebuild %q", segs, s)
		}
		for _, seg := range segs {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("accepted bad segment %q in %q", seg, s)
			}
			for _, c := range []byte(seg) {
				if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
					t.Fatalf("accepted byte %q in %q", c, s)
				}
			}
		}
		again, err := ParseAgentID(id.String())
		if err != nil || again != id {
			t.Fatalf("re-parse of %q: %v", s, err)
		}
	})
}
