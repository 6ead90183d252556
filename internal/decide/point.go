package decide

import (
	"fmt"
	"slices"
	"strings"

	"github.com/warden-run/warden/internal/identity"
)

// Point is the enforcement point a request comes from, as the pipeline
// treats it: the resources it serves, which every decision checks the
// agent's token against, and the request context fields taken on its word.
type Point struct {
	// Name is recorded as the entry's enforcement_point.
	Name string
	// Audiences are the resources the point serves. A token must have been
	// issued for one of them: the one the request names, when it names one,
	// which must then be one of them.
	Audiences []string
	// Unbound says why a point has no audience; its decisions then check
	// only the audience a request names, and their entries say that none
	// was checked otherwise. A point with neither is refused every decision.
	Unbound Unbound
	// Trust says which context fields the point is believed on.
	Trust Trust
}

// Unbound is why an enforcement point has no audience.
type Unbound string

// Why an enforcement point has no audience.
const (
	// UnboundDeliberately: registered with --no-audience.
	UnboundDeliberately Unbound = "registered_without_audience"
	// UnboundLegacy: registered before enforcement points had audiences.
	UnboundLegacy Unbound = "registered_before_audiences"
	// UnboundAdmin: the admin token, used in place of a credential.
	UnboundAdmin Unbound = "admin_token"
)

// Trust is a set of request context fields an enforcement point is
// believed on. A field it is not trusted for is dropped from the policy
// input, and the decision's entry says so.
type Trust uint8

// The fields an enforcement point can be trusted for.
const (
	// TrustSourceIP: context.source.ip, and the region Warden derives from it.
	TrustSourceIP Trust = 1 << iota
	// TrustSession: context.session.id, context.session.taints and
	// context.provenance.
	TrustSession

	TrustNone Trust = 0
	TrustAll        = TrustSourceIP | TrustSession
)

type trustName struct {
	t    Trust
	name string
}

var trustNames = []trustName{{TrustSourceIP, "source_ip"}, {TrustSession, "session"}}

// ParseTrust reads trust names: source_ip, session; "all" and "none" too.
func ParseTrust(names []string) (Trust, error) {
	var t Trust
	for _, n := range names {
		switch n {
		case "all":
			t |= TrustAll
			continue
		case "none":
			continue
		}
		i := slices.IndexFunc(trustNames, func(x trustName) bool { return x.name == n })
		if i < 0 {
			return 0, fmt.Errorf("%w: trust %q: want source_ip, session, all or none", ErrInvalidEnforcementPoint, n)
		}
		t |= trustNames[i].t
	}
	return t, nil
}

// Names lists the fields t trusts, in a fixed order.
func (t Trust) Names() []string {
	out := []string{}
	for _, x := range trustNames {
		if t&x.t != 0 {
			out = append(out, x.name)
		}
	}
	return out
}

// InProcess is an enforcement point in this process that serves
// audiences. It reads the source address from its own socket and keeps its
// own sessions, so it is trusted for both.
func InProcess(name string, audiences ...string) Point {
	return Point{Name: name, Audiences: audiences, Trust: TrustAll}
}

// AdminPoint is the admin actor asking for decisions with the admin token.
func AdminPoint(actor string) Point {
	return Point{Name: actor, Unbound: UnboundAdmin, Trust: TrustAll}
}

// checkAudience says why tok may not be used for req at pt ("" when it
// may), and the reason no audience was checked, when none was.
func (pt Point) checkAudience(req *Request, tok *identity.Token) (reason string, unchecked Unbound) {
	switch {
	case len(pt.Audiences) > 0:
		if req.Audience != "" && !slices.Contains(pt.Audiences, req.Audience) {
			return ReasonAudienceMismatch, ""
		}
		if req.Audience != "" && tok.Audience.Contains(req.Audience) ||
			req.Audience == "" && slices.ContainsFunc(pt.Audiences, tok.Audience.Contains) {
			return "", ""
		}
		return ReasonWrongAudience, ""
	case pt.Unbound == "":
		return ReasonPointUnbound, ""
	case req.Audience == "":
		return "", pt.Unbound
	case !tok.Audience.Contains(req.Audience):
		return ReasonWrongAudience, ""
	}
	return "", ""
}

// trusted is req with the context fields pt is not trusted for removed, and
// the names of the fields removed (only those the request set).
func (pt Point) trusted(req *Request) (*Request, []string) {
	var dropped []string
	src, sess := req.Context.Source, req.Context.Session
	if pt.Trust&TrustSourceIP == 0 && src.IP != "" {
		dropped, src = append(dropped, "context.source.ip"), Source{}
	}
	prov := req.Context.Provenance
	if pt.Trust&TrustSession == 0 {
		if sess.ID != "" {
			dropped = append(dropped, "context.session.id")
		}
		if len(sess.Taints) > 0 {
			dropped = append(dropped, "context.session.taints")
		}
		if prov != nil {
			dropped = append(dropped, "context.provenance")
		}
		sess, prov = Session{}, nil
	}
	if len(dropped) == 0 {
		return req, nil
	}
	r := *req
	r.Context.Source, r.Context.Session, r.Context.Provenance = src, sess, prov
	return &r, dropped
}

// validAudience says whether s can be an audience: a token's aud value,
// such as https://gw.example/mcp or warden.
func validAudience(s string) bool {
	return s != "" && len(s) <= 1024 && strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) < 0
}
