package extauthz_test

import (
	"context"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/warden-run/warden/internal/app/apptest"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
	"github.com/warden-run/warden/sdk"
)

// The automatic response reaches the mesh: an agent whose request no role
// allows is quarantined by the playbook, and Envoy's next check of a request
// it was allowed before is denied.
func TestResponseReachesExtAuthz(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := apptest.Start(t, func(c *config.Config) { c.Identity.Resources = []string{resource} })
	v, _, _, err := w.App.Policies.Push(ctx, "admin:test", &policy.Bundle{Files: map[string][]byte{
		"policy.rego": []byte(testPolicy),
		"response.rego": []byte("package warden.response\n\n" +
			`actions contains {"action": "quarantine"} if "not_permitted" in input.fired` + "\n")}}, "with a playbook")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.App.Policies.Activate(ctx, "admin:test", v.ID); err != nil {
		t.Fatal(err)
	}
	client := serve(t, w)

	const id = "ai-agent://dev/mesh-rogue"
	c, err := sdk.NewClient(w.URL, id, w.Register(t, id, "agent"), sdk.WithResource(resource))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	check := func(method, path string) codes.Code {
		t.Helper()
		resp, err := client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: "10.0.0.7"}}}},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: method, Scheme: "https",
				Host: "crm.mesh.test", Path: path, Headers: map[string]string{"authorization": "Bearer " + tok.AccessToken}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		return codes.Code(resp.GetStatus().GetCode())
	}
	if got := check("GET", "/accounts/7"); got != codes.OK {
		t.Fatalf("before: %v", got)
	}
	if got := check("DELETE", "/accounts/7"); got != codes.PermissionDenied {
		t.Fatalf("a request no role allows: %v", got)
	}
	// The responder records the action in the incident once it is in
	// force (the verifier's view refreshed): the store says quarantined a
	// little before that.
	deadline := time.Now().Add(10 * time.Second)
	for {
		incs, _ := w.App.Store.Incidents(ctx, store.IncidentFilter{AgentID: id})
		if len(incs) == 1 && slices.ContainsFunc(incs[0].Actions, func(x store.IncidentAction) bool { return x.Action == "quarantine" }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no quarantine recorded: %+v", incs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := check("GET", "/accounts/7"); got == codes.OK {
		t.Fatal("Envoy's check let the quarantined agent through")
	}
}
