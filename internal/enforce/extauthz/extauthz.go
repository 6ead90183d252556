// Package extauthz is Warden's Envoy external authorization server
// (envoy.service.auth.v3.Authorization/Check over gRPC): a service mesh
// asks it about every request to a protected service, and it answers with
// Warden's decision. Allowed requests go on without the agent's
// credentials; anything else, errors included, is refused.
package extauthz

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"

	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/enforce"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/wire"
)

// Config is the ext_authz part of gateway.yaml (ext_authz:).
type Config struct {
	// Listen is the gRPC address Envoy calls.
	Listen string `yaml:"listen"`
	// Resource is the resource identifier (RFC 8707) agents' tokens must
	// be issued for: the services behind the mesh, as one audience.
	Resource string `yaml:"resource"`
}

// Server answers Envoy's Check calls.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	dec  enforce.Decider
	edge *enforce.Edge
	lg   *slog.Logger
}

// New makes a server that authenticates with edge and decides with dec.
func New(dec enforce.Decider, edge *enforce.Edge, lg *slog.Logger) *Server {
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &Server{dec: dec, edge: edge, lg: lg}
}

// Check decides one request. It never answers OK on an error: a request
// it cannot read, authenticate or decide is refused.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	h := req.GetAttributes().GetRequest().GetHttp()
	if h == nil {
		return deny(http.StatusBadRequest, nil, "no HTTP request attributes"), nil
	}
	headers := h.GetHeaders() // lower-case names
	if h.GetMethod() == http.MethodTrace {
		return deny(http.StatusMethodNotAllowed, nil, "TRACE is not allowed through"), nil
	}
	for name := range headers {
		if wire.AliasOfAgentHeader(name) {
			return deny(http.StatusBadRequest, nil, "the header "+name+" is read as "+strings.ReplaceAll(name, "_", "-")+" by some servers: not accepted"), nil
		}
	}
	creds, err := credentials(headers)
	if err != nil {
		no := s.edgeRefusal(err)
		return deny(no.Status, challenge(no), no.Message), nil
	}
	path, query, _ := strings.Cut(h.GetPath(), "?")
	// Policy decides on the decoded path, which must be clean, and which
	// the upstream must not read otherwise: an escaped '/' or '\' is
	// refused.
	decoded, err := url.PathUnescape(path)
	if lower := strings.ToLower(path); err != nil || !wire.CleanPath(decoded) || strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") {
		return deny(http.StatusBadRequest, nil, "the path must not hold '.', '..', empty segments or escaped slashes"), nil
	}
	values, err := url.ParseQuery(query)
	if err != nil {
		return deny(http.StatusBadRequest, nil, "the query cannot be read: "+err.Error()), nil
	}
	scheme := h.GetScheme()
	if scheme == "" {
		scheme = "https"
	}
	htu := scheme + "://" + h.GetHost() + path
	ip := req.GetAttributes().GetSource().GetAddress().GetSocketAddress().GetAddress()
	caller, no := s.edge.Check(ctx, creds, h.GetMethod(), htu, ip)
	if no != nil {
		return deny(no.Status, challenge(no), no.Message), nil
	}
	// Envoy forwards the body it has: one policy cannot read is refused.
	// Envoy sends the body as text, or as bytes (pack_as_bytes). A body
	// it did not send whole cannot be decided on: policy would not see
	// what the upstream reads.
	body := []byte(h.GetBody())
	if len(body) == 0 {
		body = h.GetRawBody()
	}
	declared, _ := strconv.ParseInt(headers["content-length"], 10, 64)
	if int64(len(body)) < max(h.GetSize(), declared) || headers["x-envoy-auth-partial-body"] == "true" ||
		len(body) == 0 && headers["transfer-encoding"] != "" {
		return deny(http.StatusBadRequest, nil, "the request body did not reach the authorization server whole: configure with_request_body, allow_partial_message: false"), nil
	}
	args, _, err := wire.HTTPArgs(values, headers["content-type"], body)
	if err != nil {
		return deny(http.StatusBadRequest, nil, err.Error()), nil
	}
	dr := &decide.Request{Token: caller.Token, Action: "http:" + h.GetMethod(),
		Resource: decide.Resource{Kind: "http.request", ID: canonicalHost(scheme, h.GetHost()) + decoded},
		Args:     args,
		Context:  decide.RequestContext{Source: decide.Source{IP: caller.IP}}}
	d, err := s.dec.Decide(ctx, dr)
	if err != nil {
		return deny(http.StatusBadRequest, nil, err.Error()), nil
	}
	if d.Outcome == policy.Allow {
		// Envoy passes the upstream's answer on unseen: an obligation
		// on it (redact) cannot be applied here.
		if err := enforce.CheckObligations(d.Obligations); err != nil {
			s.lg.Warn("ext_authz: a decision's obligations cannot be applied; refused", "decision_id", d.ID, "err", err)
			return denyJSON(http.StatusForbidden, fmt.Sprintf(`{"error":"denied","decision_id":%q}`, d.ID)), nil
		}
	}
	switch d.Outcome {
	case policy.Allow:
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				HeadersToRemove: wire.AgentHeaders,
				Headers:         []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-warden-decision-id", Value: d.ID}}},
			}},
		}, nil
	case policy.PendingApproval:
		b, _ := json.Marshal(map[string]any{"error": "approval_required", "decision_id": d.ID, "approval": d.Approval})
		return denyJSON(http.StatusForbidden, string(b)), nil
	default:
		return denyJSON(http.StatusForbidden, fmt.Sprintf(`{"error":"denied","decision_id":%q}`, d.ID)), nil
	}
}

func (s *Server) edgeRefusal(err error) *enforce.Refusal {
	return &enforce.Refusal{Status: http.StatusUnauthorized,
		Challenge: fmt.Sprintf("Bearer resource_metadata=%q", s.edge.MetadataURL), Message: "unauthorized: " + err.Error()}
}

// credentials reads the Authorization and DPoP headers Envoy passed on.
func credentials(headers map[string]string) (wire.Credentials, error) {
	r := &http.Request{Header: http.Header{}}
	if v, ok := headers["authorization"]; ok {
		r.Header.Set("Authorization", v)
	}
	if v, ok := headers["dpop"]; ok {
		r.Header.Set("DPoP", v)
	}
	return wire.ReadCredentials(r)
}

func challenge(no *enforce.Refusal) []*corev3.HeaderValueOption {
	if no.Challenge == "" {
		return nil
	}
	return []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "www-authenticate", Value: no.Challenge}}}
}

func deny(status int, headers []*corev3.HeaderValueOption, msg string) *authv3.CheckResponse {
	code := codes.PermissionDenied
	if status == http.StatusUnauthorized {
		code = codes.Unauthenticated
	}
	if status == http.StatusServiceUnavailable {
		code = codes.Unavailable
	}
	b, _ := json.Marshal(map[string]string{"error": msg})
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code), Message: msg},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(status)},
			Headers: append(headers, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: "content-type", Value: "application/json"}}),
			Body:    string(b),
		}},
	}
}

func denyJSON(status int, body string) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(status)},
			Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "content-type", Value: "application/json"}}},
			Body:    body,
		}},
	}
}

// canonicalHost is host as a virtual host matches it: lower case, without
// a trailing dot or the scheme's default port, so that "API.example:443."
// is decided as "api.example".
func canonicalHost(scheme, host string) string {
	host = strings.ToLower(host)
	if h, port, err := net.SplitHostPort(host); err == nil {
		if scheme == "https" && port == "443" || scheme == "http" && port == "80" {
			host = h
			if strings.Contains(h, ":") {
				host = "[" + h + "]"
			}
		}
	}
	if h, port, err := net.SplitHostPort(host); err == nil {
		return net.JoinHostPort(strings.TrimSuffix(h, "."), port)
	}
	return strings.TrimSuffix(host, ".")
}
