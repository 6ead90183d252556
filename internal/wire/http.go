package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"unicode/utf8"
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
// parameters (a name given once is a string, more often a list), and when
// there is a body, its content type, its size, and its content when that
// is JSON (args.body) or a form (args.form, as the query). A body that says
// it is JSON, or a form, must be one, or it is an error: a policy that
// checks a field of the body must not be skipped by a body it cannot read
// and the upstream can; JSON that names a member twice, or two that differ
// only in case, is refused (CheckKeys). body is the body as policy saw it,
// re-encoded (JSON with numbers as written; a form with its fields in
// order): forward it instead of the original, so that the upstream
// reads what was decided. Another kind of body is forwarded as it came, and
// policy sees only its type and size.
func HTTPArgs(query url.Values, contentType string, raw []byte) (args json.RawMessage, body []byte, err error) {
	a := map[string]any{}
	if len(query) > 0 {
		if err := checkNames(query); err != nil {
			return nil, nil, fmt.Errorf("the query: %v", err)
		}
		a["query"] = fields(query)
	}
	body = raw
	if len(raw) > 0 {
		a["content_type"] = contentType
		if contentType == "" {
			// The upstream may read it as JSON, or as a form.
			return nil, nil, errors.New("a body needs a Content-Type")
		}
		mt, _, err := mime.ParseMediaType(contentType)
		if err != nil {
			return nil, nil, fmt.Errorf("the Content-Type %q cannot be read", contentType)
		}
		switch {
		case IsJSON(mt):
			if err := CheckKeys(raw); err != nil {
				return nil, nil, fmt.Errorf("the body: %v", err)
			}
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.UseNumber()
			var v any
			if err := dec.Decode(&v); err != nil {
				return nil, nil, fmt.Errorf("the body is not JSON: %v", err)
			}
			if dec.More() {
				return nil, nil, errors.New("the body holds more than one JSON value")
			}
			if m, ok := v.(map[string]any); ok && m[methodParam] != nil {
				return nil, nil, fmt.Errorf("the body: %q is read as the method by some frameworks; it is not accepted", methodParam)
			}
			if body, err = json.Marshal(v); err != nil {
				return nil, nil, err
			}
			a["body"] = json.RawMessage(body)
		case mt == "application/x-www-form-urlencoded":
			form, err := url.ParseQuery(string(raw))
			if err != nil {
				return nil, nil, fmt.Errorf("the body is not a form: %v", err)
			}
			if err := checkNames(form); err != nil {
				return nil, nil, fmt.Errorf("the form: %v", err)
			}
			body = []byte(form.Encode())
			a["form"] = fields(form)
		}
		a["body_size"] = len(body)
	}
	args, err = json.Marshal(a)
	return args, body, err
}

// IsJSON says whether media type mt (without parameters) is JSON.
func IsJSON(mt string) bool {
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

// methodParam is the parameter some frameworks (Rails, Laravel, Symfony,
// ASP.NET Core) read as the request's method.
const methodParam = "_method"

// checkNames refuses a query or form that names the method, or gives two
// names that differ only in case: frameworks that bind names without
// regard to case would read either.
func checkNames(v url.Values) error {
	seen := make(map[string]string, len(v))
	for name := range v {
		if strings.EqualFold(name, methodParam) {
			return fmt.Errorf("%q is read as the method by some frameworks; it is not accepted", name)
		}
		f := fold(name)
		if prev, ok := seen[f]; ok {
			return fmt.Errorf("the names %q and %q differ only in case: an upstream may read either", min(prev, name), max(prev, name))
		}
		seen[f] = name
	}
	return nil
}

// AliasOfAgentHeader says whether header name, read with '_' as '-' (as
// CGI-style servers do), is one of AgentHeaders though it is not written
// as one: a request carrying it is refused, as removing one spelling
// would leave the other.
func AliasOfAgentHeader(name string) bool {
	if !strings.Contains(name, "_") {
		return false
	}
	return slices.Contains(AgentHeaders, strings.ToLower(strings.ReplaceAll(name, "_", "-")))
}

// fields is a query or form as policy sees it: a name given once is a
// string, more often a list.
func fields(v url.Values) map[string]any {
	m := make(map[string]any, len(v))
	for k, vs := range v {
		if len(vs) == 1 {
			m[k] = vs[0]
		} else {
			m[k] = vs
		}
	}
	return m
}

// CleanPath says whether p is in its clean form: absolute, with no "." or ".."
// segments, no empty ones (a trailing slash is allowed), no backslash (a
// separator to some servers) and no ';' (servers that read ";parameters"
// drop them before they route: "/crm/admin;x/users" is "/crm/admin/users"
// to them). Policy decides on the path as written; an upstream that
// resolved "/crm/../admin" would serve what was never decided, so such
// paths are refused instead.
func CleanPath(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\;") {
		return false
	}
	c := path.Clean(p)
	return c == p || c+"/" == p
}

// UserInputHeader carries the user's own request (base64url of its UTF-8
// text, at most MaxUserInput bytes decoded), which the agent framework or
// orchestrator sends with an agent's requests to the MCP gateway: its
// values count as the user's (trusted) in the provenance of the agent's
// arguments.
const (
	UserInputHeader = "Warden-User-Input"
	MaxUserInput    = 16 << 10
)

// DecodeUserInput reads a Warden-User-Input header's value.
func DecodeUserInput(v string) (string, error) {
	text, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(v, "="))
	if err != nil || len(text) > MaxUserInput || !utf8.Valid(text) {
		return "", fmt.Errorf("%s: want base64url of the user's request, UTF-8, at most %d bytes", UserInputHeader, MaxUserInput)
	}
	return string(text), nil
}

// AgentHeaders are request headers an agent's request must not carry to
// an upstream: its credentials, which are Warden's to check, and headers
// some servers and frameworks read instead of the request's own method,
// path or source address, which would make the upstream run something
// other than what was decided (lower case).
var AgentHeaders = []string{
	"authorization", "dpop", "cookie", "proxy-authorization",
	"x-http-method-override", "x-http-method", "x-method-override",
	"x-original-url", "x-rewrite-url", "x-original-method", "x-forwarded-prefix", "x-forwarded-path",
	"forwarded", "x-real-ip", "x-client-ip", "true-client-ip", "x-cluster-client-ip", "cf-connecting-ip", "fastly-client-ip",
}
