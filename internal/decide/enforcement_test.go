package decide_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/enforce"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
	"github.com/warden-run/warden/sdk"
)

// An enforcement point in this process (the gateway, the proxy, ext_authz)
// decides only on tokens issued for the resources it serves, and one given
// none decides nothing.
func TestInProcessPointsCheckTheirAudience(t *testing.T) {
	t.Parallel()
	const gw = "https://gw.example/mcp"
	e := start(t, func(c *config.Config) { c.Identity.Resources, c.Policy.Timeout = []string{gw}, time.Second })
	e.activate(t, testBundle(testPolicy))
	k := e.w.Register(t, "ai-agent://dev/reader", "reader")
	token := func(opts ...sdk.Option) string {
		c, err := sdk.NewClient(e.w.URL, "ai-agent://dev/reader", k, opts...)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := c.Token(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		return tok.AccessToken
	}
	forWarden, forGateway := token(), token(sdk.WithResource(gw))
	call := func(tok string) *decide.Request {
		return &decide.Request{Token: tok, Action: "tools/call", Resource: decide.Resource{Kind: "mcp.tool", ID: "search/query"}}
	}
	for _, tc := range []struct {
		name   string
		local  enforce.Local
		token  string
		reason string
	}{
		{"a token for the gateway", enforce.Local{Pipeline: e.w.App.Decide, Name: "gw", Audiences: []string{gw}}, forGateway, ""},
		{"a token for another resource", enforce.Local{Pipeline: e.w.App.Decide, Name: "gw", Audiences: []string{gw}}, forWarden, decide.ReasonWrongAudience},
		{"no audience given to the enforcement point", enforce.Local{Pipeline: e.w.App.Decide, Name: "gw"}, forGateway, decide.ReasonPointUnbound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := tc.local.Decide(e.ctx, call(tc.token))
			if err != nil {
				t.Fatal(err)
			}
			if tc.reason == "" && d.Outcome != policy.Allow || tc.reason != "" && (d.Outcome != policy.Deny || !slices.Equal(d.Reasons, []string{tc.reason})) {
				t.Fatalf("decision %+v, want %q", d, tc.reason)
			}
			if may := tc.local.MayAllow(e.ctx, call(tc.token)); may != (tc.reason == "") {
				t.Fatalf("MayAllow %v", may)
			}
		})
	}
}

// At start, Warden warns of every live enforcement point registered before
// enforcement points had audiences.
func TestStartWarnsOfPointsWithoutAudience(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	digest := sha256.Sum256([]byte("a credential from before"))
	if err := e.w.App.Store.RegisterEnforcementPoint(e.ctx, store.EnforcementPoint{Name: "old-gw", CredentialDigest: digest[:],
		Trust: []string{"source_ip", "session"}, CreatedAt: store.Now(), CreatedBy: "admin:test"},
		store.Event{Time: store.Now(), Actor: "admin:test", Action: "enforcement_point.register", Target: "pep:old-gw"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.w.App.EnforcementPoints.Register(e.ctx, "admin:test", decide.Registration{Name: "new-gw", Audience: "https://gw.example/mcp"}); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	if _, err := decide.OpenEnforcementPoints(ctx, e.w.App.Store, slog.New(slog.NewTextHandler(&logs, nil)), nil); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "name=old-gw") || strings.Contains(out, "new-gw") {
		t.Fatalf("the log at start: %s", out)
	}
}

func TestRegistrationIsChecked(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	for _, tc := range []struct {
		name  string
		reg   decide.Registration
		says  string
		trust []string
	}{
		{"no audience", decide.Registration{Name: "a"}, "audience: required", nil},
		{"both", decide.Registration{Name: "b", Audience: "warden", NoAudience: true}, "one or the other", nil},
		{"an audience with a space", decide.Registration{Name: "c", Audience: "https://x.example/a b"}, "without spaces", nil},
		{"an unknown trust", decide.Registration{Name: "d", Audience: "warden", Trust: []string{"region"}}, `trust "region"`, nil},
		{"a bad name", decide.Registration{Name: "-x", Audience: "warden"}, "name", nil},
		{"trust all", decide.Registration{Name: "f", Audience: "warden", Trust: []string{"all"}}, "", []string{"source_ip", "session"}},
		{"trust none", decide.Registration{Name: "g", NoAudience: true, Trust: []string{"none"}}, "", []string{}},
		{"trust one", decide.Registration{Name: "h", Audience: "https://gw.example/mcp", Trust: []string{"session"}}, "", []string{"session"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, p, err := e.w.App.EnforcementPoints.Register(e.ctx, "admin:test", tc.reg)
			if tc.says != "" {
				if !errors.Is(err, decide.ErrInvalidEnforcementPoint) || !strings.Contains(err.Error(), tc.says) {
					t.Fatalf("%v, want an error saying %q", err, tc.says)
				}
				return
			}
			if err != nil || !slices.Equal(p.Trust, tc.trust) || p.Audience != tc.reg.Audience || p.NoAudience != tc.reg.NoAudience {
				t.Fatalf("registered %+v %v", p, err)
			}
		})
	}
}
