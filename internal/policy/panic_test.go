package policy_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/policy"
)

// A builtin that panics on some input makes that evaluation an error (a
// deny), with nothing of the input in it; the process, which decides for
// every other agent, goes on. Evaluation runs off the request's goroutine,
// where nothing else would recover it.
func TestPanicInEvaluationIsAnError(t *testing.T) {
	t.Parallel()
	b := &policy.Bundle{Files: map[string][]byte{"p.rego": []byte("package warden.authz\nallow if test.panic(input.args.secret)\n")}}
	e, err := policy.Compile(context.Background(), b, policy.WithPanickingBuiltin(policy.EngineConfig{Timeout: time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Evaluate(context.Background(), map[string]any{"args": map[string]any{"secret": "hunter2"}}, time.Now().Truncate(time.Second))
	if !errors.Is(err, policy.ErrEvaluation) || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("a panicking evaluation: %v", err)
	}
}
