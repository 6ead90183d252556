// Package cleanpath says whether an HTTP path is one an enforcement point
// may decide on: every enforcement point, and the Go SDK's middleware,
// applies the same rule.
package cleanpath

import (
	"path"
	"strings"
)

// OK says whether p is in its clean form: absolute, with no "." or ".."
// segments (also before a ";parameter", which some servers drop before
// they resolve dots), no empty ones (a trailing slash is allowed) and no
// backslash (a separator to some servers). Policy decides on the path as
// written; an upstream that resolved "/crm/../admin" would serve what was
// never decided, so such paths are refused instead.
func OK(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.ContainsRune(p, '\\') {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if name, _, ok := strings.Cut(seg, ";"); ok && (name == "." || name == "..") {
			return false
		}
	}
	c := path.Clean(p)
	return c == p || c+"/" == p
}
