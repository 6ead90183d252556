package policy_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/policy"
)

func TestRespond(t *testing.T) {
	t.Parallel()
	const authz = "package warden.authz\n\ndefault allow := false\n"
	cases := []struct {
		name     string
		playbook string // empty: none
		want     []policy.ResponseAction
		defined  bool
		err      error
	}{
		{name: "no playbook"},
		{name: "graduated, mildest first", defined: true, playbook: `package warden.response
actions contains {"action": "quarantine", "reason": "critical"} if input.risk.level == "critical"
actions contains {"action": "alert"} if input.risk.level == "critical"
actions contains {"action": "restrict", "expires": "1h"} if input.risk.level == "critical"
`, want: []policy.ResponseAction{{Action: "alert"}, {Action: "restrict", Expires: time.Hour}, {Action: "quarantine", Reason: "critical"}}},
		{name: "nothing to do", defined: true, playbook: `package warden.response
actions contains {"action": "alert"} if input.risk.level == "medium"
`, want: []policy.ResponseAction{}},
		{name: "an unknown action", playbook: `package warden.response
actions contains {"action": "delete_agent"} if true
`, err: policy.ErrMalformedResult},
		{name: "an expiry that is no duration", playbook: `package warden.response
actions contains {"action": "restrict", "expires": "soon"} if true
`, err: policy.ErrMalformedResult},
		{name: "an expiry past 30 days", playbook: `package warden.response
actions contains {"action": "restrict", "expires": "2000h"} if true
`, err: policy.ErrMalformedResult},
		{name: "an unknown key", playbook: `package warden.response
actions contains {"action": "alert", "severity": "high"} if true
`, err: policy.ErrMalformedResult},
		{name: "not a set", playbook: `package warden.response
actions := "quarantine"
`, err: policy.ErrMalformedResult},
		{name: "an error", playbook: `package warden.response
actions contains {"action": "alert", "reason": sprintf("%d", [to_number(input.risk.level)])} if true
`, err: policy.ErrEvaluation},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			files := map[string]string{"policy.rego": authz}
			if c.playbook != "" {
				files["response.rego"] = c.playbook
			}
			e, err := policy.Compile(context.Background(), bundle(files), policy.EngineConfig{})
			if err != nil {
				t.Fatal(err)
			}
			got, defined, err := e.Respond(context.Background(), map[string]any{"risk": map[string]any{"level": "critical"}}, time.Now())
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("err %v, want %v", err, c.err)
				}
				return
			}
			if err != nil || defined != c.defined {
				t.Fatalf("defined %v, err %v; want defined %v", defined, err, c.defined)
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Fatalf("got %+v, want %+v", got, c.want)
				}
			}
		})
	}
}

// A case whose evaluation misses its deadline once, as on a busy machine,
// is tried again rather than failing the bundle's activation.
func TestCaseTimingOutOnceIsTriedAgain(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}, 16), make(chan struct{})
	cfg := policy.WithBlockingBuiltin(policy.EngineConfig{Timeout: 50 * time.Millisecond}, entered, release)
	b := bundle(map[string]string{
		"policy.rego":  "package warden.authz\n\nallow if test.block(true)\n",
		"cases/c.yaml": "- {name: allowed, input: {action: read}, outcome: allow}\n",
	})
	e, err := policy.Compile(context.Background(), b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		<-entered // the first evaluation, held past its deadline
		<-entered // the second: now both may go on
		close(release)
	}()
	cases, err := policy.LoadCases(b)
	if err != nil {
		t.Fatal(err)
	}
	if r := cases[0].Run(context.Background(), e); !r.Pass {
		t.Fatalf("the case failed: %+v", r)
	}
}
