package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// ErrNoCredentials means a request carried no access token.
var ErrNoCredentials = errors.New("no access token")

// Credentials are an agent's access token and DPoP proof as an HTTP
// request carried them.
type Credentials struct {
	Token string
	// Scheme is "Bearer" or "DPoP", as the Authorization header said.
	Scheme string
	Proof  string
}

// ReadCredentials reads the Authorization header (Bearer or DPoP scheme)
// and the DPoP header. Anything else, or more than one of either, is an
// error that says what is wrong.
func ReadCredentials(r *http.Request) (Credentials, error) {
	auth := r.Header.Values("Authorization")
	if len(auth) == 0 {
		return Credentials{}, ErrNoCredentials
	}
	if len(auth) > 1 {
		return Credentials{}, errors.New("more than one Authorization header")
	}
	scheme, token, ok := strings.Cut(auth[0], " ")
	token = strings.TrimSpace(token)
	switch {
	case !ok || token == "" || strings.ContainsAny(token, " \t"):
		return Credentials{}, errors.New("the Authorization header is not \"Bearer <token>\" or \"DPoP <token>\"")
	case strings.EqualFold(scheme, "Bearer"):
		scheme = "Bearer"
	case strings.EqualFold(scheme, "DPoP"):
		scheme = "DPoP"
	default:
		return Credentials{}, errors.New("the Authorization scheme is not Bearer or DPoP")
	}
	proofs := r.Header.Values("DPoP")
	if len(proofs) > 1 {
		return Credentials{}, errors.New("more than one DPoP header")
	}
	c := Credentials{Token: token, Scheme: scheme}
	if len(proofs) == 1 {
		c.Proof = proofs[0]
	}
	if scheme == "DPoP" && c.Proof == "" {
		return Credentials{}, errors.New("the DPoP scheme needs a DPoP proof header")
	}
	return c, nil
}

// SourceIP is the address the request came from: the peer's, never a
// header the client could set.
func SourceIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	return host
}

// HTTPArgs are what policy sees of an HTTP request's arguments: its query
// parameters (a name given once is a string, more often a list), its body
// when that is JSON, and the body's content type when there is a body. A
// body that says it is JSON must be JSON, or it is an error: a policy that
// checks a field of the body must not be skipped by a body it cannot read
// and the upstream can. body is that JSON as policy saw it, re-encoded
// (numbers as written, a repeated key once): forward it instead of the
// original, so that the upstream reads what was decided.
func HTTPArgs(query url.Values, contentType string, raw []byte) (args json.RawMessage, body []byte, err error) {
	a := map[string]any{}
	if len(query) > 0 {
		m := map[string]any{}
		for k, vs := range query {
			if len(vs) == 1 {
				m[k] = vs[0]
			} else {
				m[k] = vs
			}
		}
		a["query"] = m
	}
	body = raw
	if len(raw) > 0 {
		a["content_type"] = contentType
		mt, _, err := mime.ParseMediaType(contentType)
		if err != nil && contentType != "" {
			// The upstream may read it as JSON all the same.
			return nil, nil, fmt.Errorf("the Content-Type %q cannot be read", contentType)
		}
		if mt == "application/json" || strings.HasSuffix(mt, "+json") {
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.UseNumber()
			var v any
			if err := dec.Decode(&v); err != nil {
				return nil, nil, fmt.Errorf("the body is not JSON: %v", err)
			}
			if dec.More() {
				return nil, nil, errors.New("the body holds more than one JSON value")
			}
			if body, err = json.Marshal(v); err != nil {
				return nil, nil, err
			}
			a["body"] = json.RawMessage(body)
		}
	}
	args, err = json.Marshal(a)
	return args, body, err
}

// CleanPath says whether p is in its clean form: absolute, with no "." or ".."
// segments (also before a ";parameter", which some servers drop before
// they resolve dots), no empty ones (a trailing slash is allowed) and no
// backslash (a separator to some servers). Policy decides on the path as
// written; an upstream that resolved "/crm/../admin" would serve what was
// never decided, so such paths are refused instead.
func CleanPath(p string) bool {
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
