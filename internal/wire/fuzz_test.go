package wire_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/warden-run/warden/internal/wire"
)

// The Authorization and DPoP headers are the agent's: whatever they hold,
// ReadCredentials returns one token without white space and a known
// scheme, or an error.
func FuzzReadCredentials(f *testing.F) {
	for _, s := range []string{"Bearer abc", "DPoP abc", "bearer  a b", "Basic x", "", "DPoP", "Bearer\tabc"} {
		f.Add(s, "proof", false)
	}
	f.Fuzz(func(t *testing.T, auth, proof string, twice bool) {
		r := &http.Request{Header: http.Header{}}
		r.Header.Add("Authorization", auth)
		if twice {
			r.Header.Add("Authorization", auth)
		}
		if proof != "" {
			r.Header.Set("DPoP", proof)
		}
		c, err := wire.ReadCredentials(r)
		if err != nil {
			return
		}
		if twice || c.Token == "" || strings.ContainsAny(c.Token, " \t") || (c.Scheme != "Bearer" && c.Scheme != "DPoP") {
			t.Fatalf("accepted %q (twice %v): %+v", auth, twice, c)
		}
		if c.Scheme == "DPoP" && c.Proof == "" {
			t.Fatalf("the DPoP scheme without a proof: %+v", c)
		}
	})
}

// HTTPArgs reads an agent's query and body: a JSON body is either read
// (and forwarded as policy saw it) or refused, never passed unread.
func FuzzHTTPArgs(f *testing.F) {
	f.Add("a=1&a=2", "application/json", `{"x":1,"x":2}`)
	f.Add("", "application/merge-patch+json", `[1,2]`)
	f.Add("q=%zz", "text/plain", "hello")
	f.Add("", "application/json; charset=utf-8", `{"x":1} {"y":2}`)
	f.Add("", "application/JSON", `{`)
	f.Fuzz(func(t *testing.T, query, contentType, body string) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		args, forward, err := wire.HTTPArgs(q, contentType, []byte(body))
		if err != nil {
			return
		}
		var a map[string]json.RawMessage
		if err := json.Unmarshal(args, &a); err != nil {
			t.Fatalf("args are not a JSON object: %s", args)
		}
		if b, ok := a["body"]; ok && string(b) != string(forward) {
			t.Fatalf("policy saw %s, the upstream gets %s", b, forward)
		}
		if len(body) > 0 && a["content_type"] == nil {
			t.Fatalf("a body without its content type in args: %s", args)
		}
	})
}

// A path the enforcement points decide on resolves to itself.
func FuzzCleanPath(f *testing.F) {
	for _, p := range []string{"/a/b", "/a/../b", "/a/./b", "/a//b", "/a/b/", "/a;x/..;/b", `/a\b`, "a/b", "/"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if !wire.CleanPath(p) {
			return
		}
		for _, seg := range strings.Split(p, "/") {
			name, _, _ := strings.Cut(seg, ";")
			if name == "." || name == ".." {
				t.Fatalf("%q has a dot segment", p)
			}
		}
		if strings.Contains(strings.TrimSuffix(p, "/"), "//") || strings.ContainsAny(p, `\;`) || !strings.HasPrefix(p, "/") {
			t.Fatalf("%q is not clean", p)
		}
	})
}
