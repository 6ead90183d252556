// Package enforce holds what Warden's enforcement points share: the way
// they ask for decisions, and how they read an agent's credentials from an
// HTTP request.
package enforce

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/enforce/cleanpath"
)

// Decider answers an enforcement point's questions. Every answer that is
// not a clean allow is a deny; an error means the request was malformed.
type Decider interface {
	// Decide decides a request whose DPoP proof, if any, the enforcement
	// point has verified itself.
	Decide(ctx context.Context, req *decide.Request) (decide.Decision, error)
	// MayAllow says whether some arguments could make req allowed.
	MayAllow(ctx context.Context, req *decide.Request) bool
}

// Local asks the decision pipeline of this process, as the enforcement
// point Name serving Audiences: every decision checks that the agent's
// token was issued for one of them, and with none every decision is a deny.
type Local struct {
	Pipeline  *decide.Pipeline
	Name      string
	Audiences []string
}

// Decide implements Decider.
func (l Local) Decide(ctx context.Context, req *decide.Request) (decide.Decision, error) {
	return l.Pipeline.DecideVerified(ctx, decide.InProcess(l.Name, l.Audiences...), req)
}

// MayAllow implements Decider.
func (l Local) MayAllow(ctx context.Context, req *decide.Request) bool {
	return l.Pipeline.MayAllow(ctx, decide.InProcess(l.Name, l.Audiences...), req)
}

// Trust levels of an upstream, sent to the decision point as the
// resource's trust attribute: an allowed read of an untrusted one taints
// the agent (untrusted_content) for its later decisions.
const (
	Trusted        = "trusted"
	Untrusted      = "untrusted"
	TaintUntrusted = "untrusted_content"
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

// CleanPath says whether an HTTP path may be decided on (see cleanpath.OK).
func CleanPath(p string) bool { return cleanpath.OK(p) }
