package policy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/policy"
)

// BenchmarkEvaluate is one evaluation, on a small policy and on the
// finance bundle with one of its decision cases: what answering at the
// deadline (an evaluation on a goroutine of its own) costs.
func BenchmarkEvaluate(b *testing.B) {
	small := &policy.Bundle{Files: map[string][]byte{"policy.rego": []byte("package warden.authz\n\nallow if input.action == \"read\"\n")}}
	finance, err := policy.LoadDir("../../policies/finance")
	if err != nil {
		b.Fatal(err)
	}
	cases, err := policy.LoadCases(finance)
	if err != nil || len(cases) == 0 {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name   string
		bundle *policy.Bundle
		input  map[string]any
	}{
		{"small", small, map[string]any{"action": "read"}},
		{"finance", finance, cases[0].Input},
	} {
		b.Run(bc.name, func(b *testing.B) {
			// A generous timeout: this measures the cost, not the machine's load.
			e, err := policy.Compile(context.Background(), bc.bundle, policy.EngineConfig{Timeout: 10 * time.Second, NoRuleCache: true})
			if err != nil {
				b.Fatal(err)
			}
			ctx, at := context.Background(), time.Unix(1_800_000_000, 0)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Evaluate(ctx, bc.input, at); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMarshalLargestData is json.marshal over a whole data document
// at the default limit (1 MiB) and at four times it: about the longest
// one builtin call over the data can run past the evaluation timeout.
func BenchmarkMarshalLargestData(b *testing.B) {
	for _, size := range []int{1 << 20, 4 << 20} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			e, err := policy.Compile(context.Background(), &policy.Bundle{Files: map[string][]byte{
				"policy.rego": []byte("package warden.authz\n\nallow if count(json.marshal(data.items)) > 0\n"),
				"data.json":   []byte(largeData(size - 64)),
			}}, policy.EngineConfig{Timeout: time.Minute, NoRuleCache: true, Limits: policy.Limits{DataBytes: size}})
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if res, err := e.Evaluate(context.Background(), map[string]any{}, time.Unix(0, 0)); err != nil || !res.Allow {
					b.Fatal(res, err)
				}
			}
		})
	}
}
