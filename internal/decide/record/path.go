package record

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Path is a parsed input path, such as args.items[*].password: object
// members by name (or "*", any member), array elements by index (or [*],
// every element).
type Path []Step

// Step is one step of a Path.
type Step struct {
	// Key is the member name; "*" is any member. Empty for an index step.
	Key string
	// Index is the element for an index step; -1 is every element.
	Index   int
	IsIndex bool
}

func (s Step) matchesKey(k string) bool { return !s.IsIndex && (s.Key == "*" || s.Key == k) }
func (s Step) matchesIndex(i int) bool  { return s.IsIndex && (s.Index < 0 || s.Index == i) }

// maxPathLen and maxIndex keep a configured path small; no input is deeper.
const (
	maxPathLen = 1024
	maxIndex   = 1 << 20
)

var errPathSyntax = errors.New("want a path such as args.card.number, args.items[0].password or args.items[*].password")

// ParsePath parses an input path: member names joined by '.', each
// followed by any number of [N] or [*]. A name is any text without '.',
// '[' or ']'; "*" stands for every member.
func ParsePath(s string) (Path, error) {
	if s == "" || len(s) > maxPathLen {
		return nil, fmt.Errorf("%q: %w", s, errPathSyntax)
	}
	var p Path
	for seg := range strings.SplitSeq(s, ".") {
		key, rest, _ := strings.Cut(seg, "[")
		if key == "" || strings.ContainsAny(key, "]") || strings.IndexFunc(key, isControl) >= 0 {
			return nil, fmt.Errorf("%q: %w", s, errPathSyntax)
		}
		p = append(p, Step{Key: key})
		if len(seg) == len(key) {
			continue
		}
		// rest is what follows the first '[': "N]", "N][M]", "*]"...
		if rest == "" {
			return nil, fmt.Errorf("%q: %w", s, errPathSyntax)
		}
		for {
			idx, after, ok := strings.Cut(rest, "]")
			if !ok {
				return nil, fmt.Errorf("%q: %w", s, errPathSyntax)
			}
			st, err := parseIndex(idx)
			if err != nil {
				return nil, fmt.Errorf("%q: %w", s, err)
			}
			p = append(p, st)
			if after == "" {
				break
			}
			if after[0] != '[' {
				return nil, fmt.Errorf("%q: %w", s, errPathSyntax)
			}
			rest = after[1:]
		}
	}
	return p, nil
}

func parseIndex(s string) (Step, error) {
	if s == "*" {
		return Step{Index: -1, IsIndex: true}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > maxIndex || s != strconv.Itoa(n) {
		return Step{}, fmt.Errorf("index [%s]: want a number from 0 to %d, or *: %w", s, maxIndex, errPathSyntax)
	}
	return Step{Index: n, IsIndex: true}, nil
}

func isControl(r rune) bool { return r < ' ' || r == 0x7f }

// String writes the path back in the syntax ParsePath reads.
func (p Path) String() string {
	var b strings.Builder
	for i, s := range p {
		switch {
		case s.IsIndex && s.Index < 0:
			b.WriteString("[*]")
		case s.IsIndex:
			fmt.Fprintf(&b, "[%d]", s.Index)
		default:
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s.Key)
		}
	}
	return b.String()
}

// cursor is a path matched up to pos: path[pos] is the next step.
type cursor struct {
	path Path
	pos  int
}

// cursors are the paths still matching at one node of the input.
type cursors []cursor

// key returns the cursors that match member k, and whether one of them
// ends there.
func (cs cursors) key(k string) (next cursors, ends bool) {
	for _, c := range cs {
		if c.path[c.pos].matchesKey(k) {
			next, ends = next.advance(c, ends)
		}
	}
	return next, ends
}

// index is key for element i of an array.
func (cs cursors) index(i int) (next cursors, ends bool) {
	for _, c := range cs {
		if c.path[c.pos].matchesIndex(i) {
			next, ends = next.advance(c, ends)
		}
	}
	return next, ends
}

func (cs cursors) advance(c cursor, ends bool) (cursors, bool) {
	if c.pos+1 == len(c.path) {
		return cs, true
	}
	return append(cs, cursor{c.path, c.pos + 1}), ends
}
