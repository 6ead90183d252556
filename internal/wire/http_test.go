package wire_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/warden-run/warden/internal/wire"
)

func TestReadCredentials(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		h      http.Header
		scheme string
		says   string
	}{
		{"bearer", http.Header{"Authorization": {"Bearer abc"}}, "Bearer", ""},
		{"bearer, any case", http.Header{"Authorization": {"bearer abc"}}, "Bearer", ""},
		{"DPoP with its proof", http.Header{"Authorization": {"DPoP abc"}, "Dpop": {"p"}}, "DPoP", ""},
		{"none", http.Header{}, "", "no access token"},
		{"two", http.Header{"Authorization": {"Bearer a", "Bearer b"}}, "", "more than one Authorization"},
		{"basic", http.Header{"Authorization": {"Basic dXNlcg=="}}, "", "not Bearer or DPoP"},
		{"no token", http.Header{"Authorization": {"Bearer"}}, "", "is not"},
		{"spaces in the token", http.Header{"Authorization": {"Bearer a b"}}, "", "is not"},
		{"DPoP without a proof", http.Header{"Authorization": {"DPoP abc"}}, "", "needs a DPoP proof"},
		{"two proofs", http.Header{"Authorization": {"DPoP abc"}, "Dpop": {"p", "q"}}, "", "more than one DPoP"},
	}
	for _, c := range cases {
		got, err := wire.ReadCredentials(&http.Request{Header: c.h})
		switch {
		case c.says == "" && (err != nil || got.Scheme != c.scheme || got.Token != "abc"):
			t.Errorf("%s: %+v %v", c.name, got, err)
		case c.says != "" && (err == nil || !strings.Contains(err.Error(), c.says)):
			t.Errorf("%s: %v, want it to say %q", c.name, err, c.says)
		}
	}
}

func TestHTTPArgs(t *testing.T) {
	t.Parallel()
	q := url.Values{"limit": {"5"}, "tag": {"a", "b"}}
	args, body, err := wire.HTTPArgs(q, "application/json; charset=utf-8", []byte(`{"n": 12345678901234567890, "to": "b"}`))
	if err != nil || string(args) != `{"body":{"n":12345678901234567890,"to":"b"},"body_size":35,"content_type":"application/json; charset=utf-8","query":{"limit":"5","tag":["a","b"]}}` ||
		string(body) != `{"n":12345678901234567890,"to":"b"}` {
		t.Errorf("args %s, body %s, %v", args, body, err)
	}
	args, body, err = wire.HTTPArgs(nil, "text/plain", []byte("hello"))
	if err != nil || string(args) != `{"body_size":5,"content_type":"text/plain"}` || string(body) != "hello" {
		t.Errorf("a body that is not JSON: %s %s %v", args, body, err)
	}
	// A form is read, as the query is, and forwarded as policy saw it.
	args, body, err = wire.HTTPArgs(url.Values{"amount": {"50"}}, "application/x-www-form-urlencoded", []byte("to=b&amount=5000"))
	if err != nil || string(args) != `{"body_size":16,"content_type":"application/x-www-form-urlencoded","form":{"amount":"5000","to":"b"},"query":{"amount":"50"}}` ||
		string(body) != "amount=5000&to=b" {
		t.Errorf("a form: %s %s %v", args, body, err)
	}
	if _, _, err := wire.HTTPArgs(nil, "application/x-www-form-urlencoded", []byte("a=%zz")); err == nil {
		t.Error("a body that says it is a form and is not was accepted")
	}
	if _, _, err := wire.HTTPArgs(nil, "application/json garbage", []byte(`{"amount": 5000}`)); err == nil {
		t.Error("a body under a Content-Type that cannot be read was accepted")
	}
	for _, bad := range []string{"{broken", `{"amount": 5,}`, `{"a": 1} {"a": 2}`, `{"to": "a", "to": "b"}`, `{"to": "a", "TO": "b"}`} {
		if _, _, err := wire.HTTPArgs(nil, "application/json", []byte(bad)); err == nil {
			t.Errorf("%s was accepted as JSON", bad)
		}
	}
}

func TestCleanPath(t *testing.T) {
	t.Parallel()
	for p, want := range map[string]bool{
		"/crm/customers/7": true, "/crm/": true, "/": true,
		"/crm/../admin": false, "/crm/./x": false, "/crm//x": false, "crm/x": false, "": false, "/crm/..": false,
		"/crm/..;/admin": false, "/crm/.;x/y": false, "/crm/a;b/c": false, `/crm\..\admin`: false, `/crm/a\b`: false,
	} {
		if got := wire.CleanPath(p); got != want {
			t.Errorf("CleanPath(%q) = %v, want %v", p, got, want)
		}
	}
}
