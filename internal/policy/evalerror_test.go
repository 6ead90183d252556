package policy_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/policy"
)

// A builtin that fails on an argument is a deny whose error says where and
// which builtin, but not the argument: OPA quotes it (`to_number: parsing
// "hunter2"`), and the error reaches the server's log.
func TestEvaluationErrorsCarryNoValues(t *testing.T) {
	t.Parallel()
	const secret = "hunter2-in-the-args("
	cases := []struct {
		name, expr string
		// want are parts of the error that must be there.
		want []string
	}{
		{"to_number", "to_number(input.args.password)", []string{"policy.rego:4:", "eval_builtin_error", "to_number"}},
		{"time parse", "time.parse_rfc3339_ns(input.args.password)", []string{"eval_builtin_error", "time.parse_rfc3339_ns"}},
		{"semver", "semver.compare(input.args.password, \"1.0.0\")", []string{"semver.compare"}},
		{"cidr", "net.cidr_contains(input.args.password, \"10.0.0.1\")", []string{"net.cidr_contains"}},
		{"json", "json.unmarshal(input.args.password)", []string{"json.unmarshal"}},
		{"base64", "base64.decode(input.args.password)", []string{"base64.decode"}},
		{"jwt", "io.jwt.decode(input.args.password)", []string{"io.jwt.decode"}},
		{"arithmetic on a string", "input.args.password + 1", []string{"eval_type_error", "plus", "operand 1"}},
		{"regular expression", "regex.match(input.args.password, \"x\")", []string{"regex.match"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			rego := "package warden.authz\n\nallow if {\n\tx := " + c.expr + "\n\tx != 0\n}\n"
			e := compile(t, rego, policy.EngineConfig{Timeout: 10 * time.Second}) // not the case here
			input := map[string]any{"args": map[string]any{"password": secret}}
			_, err := e.Evaluate(context.Background(), input, time.Unix(0, 0))
			if !errors.Is(err, policy.ErrEvaluation) {
				t.Fatalf("err %v, want an evaluation error", err)
			}
			msg := err.Error()
			if strings.Contains(msg, "hunter2") {
				t.Fatalf("the error quotes the argument: %s", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
			if _, err := e.MayAllow(context.Background(), input, time.Unix(0, 0)); err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("MayAllow's error quotes the input: %v", err)
			}
		})
	}
}
