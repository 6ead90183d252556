package extauthz_test

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/enforce"
	"github.com/warden-run/warden/internal/enforce/extauthz"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/sdk"
)

const resource = "https://api.mesh.test"

const testPolicy = `package warden.authz

default allow := false

allow if {
	input.action == "http:GET"
	startswith(input.resource.id, "crm.mesh.test/accounts/")
}

deny contains "too_many" if to_number(input.args.query.limit) > 100

deny contains "too_much" if input.args.body.amount > 1000

allow if {
	input.action == "http:GET"
	startswith(input.resource.id, "crm.mesh.test/patients/")
}

obligations["redact"] := ["patient.ssn"] if startswith(input.resource.id, "crm.mesh.test/patients/")
`

// Envoy's Check calls, from a real gRPC client over loopback.
// serve runs the ext_authz server over w's decision point, for resource,
// until the test ends, and returns a client of it.
func serve(t *testing.T, w *apptest.Instance) authv3.AuthorizationClient {
	t.Helper()
	edge := &enforce.Edge{Verifier: w.App.Verifier, Resource: resource, MetadataURL: resource + "/.well-known/oauth-protected-resource"}
	srv := grpc.NewServer()
	authv3.RegisterAuthorizationServer(srv, extauthz.New(enforce.Local{Pipeline: w.App.Decide, Name: "envoy", Audiences: []string{resource}}, edge, nil))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

func TestCheck(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := apptest.Start(t, func(c *config.Config) { c.Identity.Resources = []string{resource} })
	v, _, _, err := w.App.Policies.Push(ctx, "admin:test", &policy.Bundle{Files: map[string][]byte{"policy.rego": []byte(testPolicy)}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.App.Policies.Activate(ctx, "admin:test", v.ID); err != nil {
		t.Fatal(err)
	}
	client := serve(t, w)

	token := func(id, aud string, dpop bool) (string, *sdk.Key) {
		k := w.Register(t, id, "agent")
		opts := []sdk.Option{sdk.WithResource(aud)}
		if dpop {
			opts = append(opts, sdk.WithDPoP())
		}
		c, err := sdk.NewClient(w.URL, id, k, opts...)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := c.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return tok.AccessToken, k
	}
	dev, _ := token("ai-agent://dev/mesh-agent", resource, false)
	other, _ := token("ai-agent://dev/elsewhere", "warden", false)
	prod, prodKey := token("ai-agent://prod/mesh-agent", resource, true)
	proof, err := prodKey.DPoPProof("GET", "https://crm.mesh.test/accounts/7", prod)
	if err != nil {
		t.Fatal(err)
	}
	checkWith := func(method, path string, headers map[string]string, edit func(*authv3.AttributeContext_HttpRequest)) *authv3.CheckResponse {
		t.Helper()
		hr := &authv3.AttributeContext_HttpRequest{Method: method, Scheme: "https", Host: "crm.mesh.test", Path: path, Headers: headers}
		if edit != nil {
			edit(hr)
		}
		resp, err := client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: "10.0.0.7"}}}},
			Request: &authv3.AttributeContext_Request{Http: hr},
		}})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	check := func(method, path string, headers map[string]string) *authv3.CheckResponse {
		t.Helper()
		return checkWith(method, path, headers, nil)
	}
	// The body is decided on, sent as text or as bytes; one that did not
	// arrive whole is refused.
	jsonBody := map[string]string{"authorization": "Bearer " + dev, "content-type": "application/json"}
	partial := map[string]string{"authorization": "Bearer " + dev, "content-type": "application/json", "x-envoy-auth-partial-body": "true"}
	for name, c := range map[string]struct {
		headers map[string]string
		edit    func(*authv3.AttributeContext_HttpRequest)
		status  int
	}{
		"body as text":  {jsonBody, func(r *authv3.AttributeContext_HttpRequest) { r.Body = `{"amount": 5000}` }, 403},
		"body as bytes": {jsonBody, func(r *authv3.AttributeContext_HttpRequest) { r.RawBody = []byte(`{"amount": 5000}`) }, 403},
		"body not sent": {jsonBody, func(r *authv3.AttributeContext_HttpRequest) { r.Size = 16 }, 400},
		// Envoy without with_request_body sends no body and no size: the
		// request's own headers say there was one.
		"body declared, not sent": {map[string]string{"authorization": "Bearer " + dev, "content-type": "application/json", "content-length": "16"}, nil, 400},
		"chunked, nothing sent":   {map[string]string{"authorization": "Bearer " + dev, "content-type": "application/json", "transfer-encoding": "chunked"}, nil, 400},
		"partial body":            {partial, func(r *authv3.AttributeContext_HttpRequest) { r.Body = `{"amount": 5` }, 400},
		"a small amount":          {jsonBody, func(r *authv3.AttributeContext_HttpRequest) { r.RawBody = []byte(`{"amount": 5}`); r.Size = 13 }, 0},
		// Envoy passes the answer on unseen: a redact obligation cannot be
		// applied here, so the allow is refused (it was let through).
		"an obligation it cannot apply": {jsonBody, func(r *authv3.AttributeContext_HttpRequest) { r.Path = "/patients/7" }, 403},
	} {
		resp := checkWith("GET", "/accounts/7", c.headers, c.edit)
		if d := resp.GetDeniedResponse(); (c.status == 0) != (d == nil) || d != nil && int(d.Status.Code) != c.status {
			t.Errorf("%s: %v", name, resp)
		}
	}
	cases := []struct {
		name    string
		method  string
		path    string
		headers map[string]string
		code    codes.Code
		status  int
		says    string
	}{
		{"allowed", "GET", "/accounts/7?limit=5", map[string]string{"authorization": "Bearer " + dev}, codes.OK, 0, ""},
		{"denied on its arguments", "GET", "/accounts/7?limit=500", map[string]string{"authorization": "Bearer " + dev}, codes.PermissionDenied, 403, `"error":"denied"`},
		{"dot segments", "GET", "/accounts/../admin?limit=5", map[string]string{"authorization": "Bearer " + dev}, codes.PermissionDenied, 400, "segments"},
		{"encoded dot segments", "GET", "/accounts/%2e%2e/admin", map[string]string{"authorization": "Bearer " + dev}, codes.PermissionDenied, 400, "segments"},
		{"dot segment with parameters", "GET", "/accounts/..;/admin", map[string]string{"authorization": "Bearer " + dev}, codes.PermissionDenied, 400, "segments"},
		{"escaped slash", "GET", "/accounts%2F7", map[string]string{"authorization": "Bearer " + dev}, codes.PermissionDenied, 400, "escaped slashes"},
		{"backslash", "GET", "/accounts/7%5c..%5cadmin", map[string]string{"authorization": "Bearer " + dev}, codes.PermissionDenied, 400, "segments"},
		{"a query that cannot be read", "GET", "/accounts/7?limit=500%", map[string]string{"authorization": "Bearer " + dev}, codes.PermissionDenied, 400, "query"},
		// Decided on the decoded path: /%61ccounts is /accounts, and over the limit.
		{"escaped letters", "GET", "/%61ccounts/7?limit=500", map[string]string{"authorization": "Bearer " + dev}, codes.PermissionDenied, 403, `"error":"denied"`},
		{"denied by default", "DELETE", "/accounts/7", map[string]string{"authorization": "Bearer " + dev}, codes.PermissionDenied, 403, "decision_id"},
		{"no token", "GET", "/accounts/7", map[string]string{}, codes.Unauthenticated, 401, "no access token"},
		{"token for another audience", "GET", "/accounts/7", map[string]string{"authorization": "Bearer " + other}, codes.Unauthenticated, 401, "not issued for this resource"},
		{"DPoP required", "GET", "/accounts/7", map[string]string{"authorization": "DPoP " + prod}, codes.Unauthenticated, 401, "DPoP"},
		{"DPoP good", "GET", "/accounts/7", map[string]string{"authorization": "DPoP " + prod, "dpop": proof}, codes.OK, 0, ""},
		{"DPoP replayed", "GET", "/accounts/7", map[string]string{"authorization": "DPoP " + prod, "dpop": proof}, codes.Unauthenticated, 401, "replayed"},
	}
	for _, c := range cases {
		resp := check(c.method, c.path, c.headers)
		if got := codes.Code(resp.GetStatus().GetCode()); got != c.code {
			t.Errorf("%s: %v, want %v (%v)", c.name, got, c.code, resp)
			continue
		}
		if c.code == codes.OK {
			ok := resp.GetOkResponse()
			if ok == nil || len(ok.Headers) != 1 || !strings.HasPrefix(ok.Headers[0].Header.Value, "dec_") {
				t.Errorf("%s: ok response %v", c.name, ok)
				continue
			}
			for _, h := range []string{"authorization", "dpop", "cookie", "x-http-method-override"} {
				if !slices.Contains(ok.HeadersToRemove, h) {
					t.Errorf("%s: %s is left for the upstream: %v", c.name, h, ok.HeadersToRemove)
				}
			}
			continue
		}
		d := resp.GetDeniedResponse()
		if d == nil || int(d.Status.Code) != c.status || !strings.Contains(d.Body, c.says) {
			t.Errorf("%s: denied response %v, want %d saying %q", c.name, d, c.status, c.says)
		}
		if c.status == 401 {
			found := false
			for _, h := range d.Headers {
				found = found || h.Header.Key == "www-authenticate" && strings.Contains(h.Header.Value, "resource_metadata=")
			}
			if !found {
				t.Errorf("%s: no challenge in %v", c.name, d.Headers)
			}
		}
	}
	// A request without HTTP attributes is refused, not let through.
	resp, err := client.Check(ctx, &authv3.CheckRequest{})
	if err != nil || codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		t.Fatalf("empty request: %v %v", resp, err)
	}
}
