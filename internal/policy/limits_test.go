package policy_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/policy"
)

// largeData is a data document of about n bytes.
func largeData(n int) string {
	var b strings.Builder
	b.WriteString(`{"items": [`)
	for i := 0; b.Len() < n; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"id": "item-%d", "tags": ["a", "b"], "n": %d}`, i, i)
	}
	b.WriteString("]}")
	return b.String()
}

// The attack of the report: one builtin call over a 15 MB data.json took
// 0.4 to 10 s against a 50 ms timeout. Such a bundle is refused before it
// is compiled or tested, and the slowest of those builtins is not there.
func TestBundleLimits(t *testing.T) {
	t.Parallel()
	huge := largeData(15 << 20)
	cases := []struct {
		name  string
		files map[string]string
		lim   policy.Limits
		says  string
	}{
		{"15 MB of data", map[string]string{"p.rego": "package warden.authz\nallow if crypto.sha256(json.marshal(data.items)) != \"\"", "data.json": huge},
			policy.Limits{}, "policy.limits.data_bytes"},
		{"data over a configured limit", map[string]string{"p.rego": "package warden.authz\nallow := true", "data.json": largeData(64 << 10)},
			policy.Limits{DataBytes: 32 << 10}, "at most 32768"},
		{"a bundle over a configured size", map[string]string{"p.rego": "package warden.authz\nallow := true", "q.rego": "package q\n# " + strings.Repeat("x", 4096)},
			policy.Limits{Bytes: 4096}, "policy.limits.bundle_bytes"},
		{"too many files", map[string]string{"p.rego": "package warden.authz\nallow := true", "q.rego": "package q", "r.rego": "package r"},
			policy.Limits{Files: 2}, "policy.limits.bundle_files"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := bundle(c.files)
			_, err := policy.Compile(context.Background(), b, policy.EngineConfig{Limits: c.lim})
			if !errors.Is(err, policy.ErrInvalidBundle) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("compile: %v, want ErrInvalidBundle saying %q", err, c.says)
			}
			_, err = policy.Test(context.Background(), b, policy.TestOptions{Engine: policy.EngineConfig{Limits: c.lim}})
			if !errors.Is(err, policy.ErrInvalidBundle) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("test: %v, want ErrInvalidBundle saying %q", err, c.says)
			}
		})
	}
}

// An evaluation is a deny at its timeout even while a builtin call that
// OPA cannot interrupt is still running (json.marshal over megabytes of
// data): Evaluate returns, and the call ends in the background.
func TestEvaluationReturnsAtItsTimeout(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{}, 64)
	release := make(chan struct{})
	cfg := policy.WithBlockingBuiltin(policy.EngineConfig{Timeout: 20 * time.Millisecond}, entered, release)
	e := compile(t, "package warden.authz\n\nallow if test.block(1) == 1\n", cfg)
	evaluate := func() chan error {
		done := make(chan error, 1)
		go func() {
			_, err := e.Evaluate(context.Background(), map[string]any{}, time.Unix(0, 0))
			done <- err
		}()
		return done
	}
	// Each evaluation blocks in the builtin and must return all the same,
	// up to the number that may run past their timeout.
	for i := range policy.MaxOverrun(e) {
		done := evaluate()
		<-entered
		select {
		case err := <-done:
			if !errors.Is(err, policy.ErrTimeout) {
				t.Fatalf("evaluation %d: %v, want a timeout", i, err)
			}
		case <-time.After(time.Minute): // only so that the test cannot hang
			close(release)
			t.Fatalf("evaluation %d did not return while its builtin call ran past the timeout", i)
		}
	}
	if got := policy.Overrunning(e); got != policy.MaxOverrun(e) {
		t.Fatalf("%d evaluations counted as running past their timeout, want %d", got, policy.MaxOverrun(e))
	}
	// One more is refused without being started: a slow version cannot
	// pile up work.
	if err := <-evaluate(); !errors.Is(err, policy.ErrTimeout) || !strings.Contains(err.Error(), "still running past their timeout") {
		t.Fatalf("with the overrun full: %v, want a timeout at once", err)
	}
	if len(entered) != 0 {
		t.Fatal("an evaluation started while the overrun was full")
	}
	close(release)
	deadline := time.Now().Add(time.Minute)
	for policy.Overrunning(e) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d evaluations still counted after their builtin calls ended", policy.Overrunning(e))
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Then the engine evaluates again (and decides, now that the builtin
	// returns at once).
	if res, err := e.Evaluate(context.Background(), map[string]any{}, time.Unix(0, 0)); err != nil || !res.Allow {
		t.Fatalf("after the overrun drained: %+v %v", res, err)
	}
}

// A removed builtin is refused at compile time, in policies and in unit
// tests alike, with why.
func TestRemovedBuiltins(t *testing.T) {
	t.Parallel()
	calls := map[string]string{
		"yaml.marshal":              "yaml.marshal(data)",
		"json.marshal_with_options": `json.marshal_with_options(data, {"pretty": true})`,
		"strings.render_template":   `strings.render_template("{{.x}}", {"x": 1})`,
		"graph.reachable_paths":     `graph.reachable_paths({}, [])`,
		"http.send":                 `http.send({"method": "GET", "url": "http://127.0.0.1:1"})`,
		"io.jwt.encode_sign":        `io.jwt.encode_sign({}, {}, {})`,
		"opa.runtime":               `opa.runtime()`,
		"json.match_schema":         `json.match_schema({}, {})`,
		"rego.parse_module":         `rego.parse_module("p.rego", "package p")`,
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for file, src := range map[string]string{
				"p.rego":      "package warden.authz\n\nallow if {\n\tx := " + call + "\n\tx != null\n}\n",
				"p_test.rego": "package warden.authz_test\n\ntest_x if {\n\tx := " + call + "\n\tx != null\n}\n",
			} {
				files := map[string]string{"p.rego": "package warden.authz\n\nallow := true\n", file: src}
				_, err := policy.Test(context.Background(), bundle(files), policy.TestOptions{})
				if !errors.Is(err, policy.ErrInvalidBundle) || !strings.Contains(err.Error(), name+" is not available in Warden policies") {
					t.Fatalf("%s: %v, want %s refused", file, err, name)
				}
			}
		})
	}
	for name := range policy.RemovedBuiltins() {
		if slices.Contains(policy.Builtins(), name) {
			t.Errorf("%s is removed and still listed", name)
		}
	}
}

// sprintf pads a verb to up to a million bytes in one call that cannot be
// interrupted: a format must be a literal with a small width.
func TestSprintfFormats(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, call string
		says       string // empty: compiles
	}{
		{"a literal", `sprintf("%s is %05.2f%% of %-10v", ["x", 1.5, "y"])`, ""},
		{"the largest width", `sprintf("%100d", [1])`, ""},
		{"a percent sign before digits", `sprintf("100%%1000000d", [])`, ""},
		{"an explicit argument index", `sprintf("%[1]d %[1]v", [1])`, ""},
		{"a width too large", `sprintf("%1000000d", [1])`, "width or precision 1000000"},
		{"a precision too large", `sprintf("%.101f", [1])`, "width or precision 101"},
		{"a width from the arguments", `sprintf("%*d", [1000000, 1])`, "taken from the arguments"},
		{"a precision from the arguments", `sprintf("%.*f", [1000000, 1])`, "taken from the arguments"},
		{"a format from data", `sprintf(data.format, [1])`, "must be a string literal"},
		{"a format from input", `sprintf(input.args.format, [1])`, "must be a string literal"},
		{"nested in another call", `upper(sprintf("%999999s", ["x"]))`, "width or precision 999999"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			files := map[string]string{"p.rego": "package warden.authz\n\nallow if {\n\tx := " + c.call + "\n\tx != \"\"\n}\n", "data.json": `{"format": "%d"}`}
			_, err := policy.Compile(context.Background(), bundle(files), policy.EngineConfig{})
			switch {
			case c.says == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.says != "" && (!errors.Is(err, policy.ErrInvalidBundle) || !strings.Contains(err.Error(), c.says)):
				t.Fatalf("compile: %v, want a refusal saying %q", err, c.says)
			}
		})
	}
}

// docs/policy-reference.md lists the builtins a policy can call: the list
// is the engine's, so that a new OPA release cannot add one unnoticed.
func TestBuiltinsAreDocumented(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/policy-reference.md")
	if err != nil {
		t.Fatal(err)
	}
	section := func(name string) []string {
		t.Helper()
		re := regexp.MustCompile(`(?s)<!-- ` + name + `: begin -->(.*?)<!-- ` + name + `: end -->`)
		m := re.FindSubmatch(doc)
		if m == nil {
			t.Fatalf("docs/policy-reference.md has no %s section", name)
		}
		var out []string
		for _, n := range regexp.MustCompile("`([a-z0-9_.]+)`").FindAllSubmatch(m[1], -1) {
			out = append(out, string(n[1]))
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	if got, want := section("allowed builtins"), policy.Builtins(); !slices.Equal(got, want) {
		t.Errorf("documented as allowed:\n%v\nallowed:\n%v", got, want)
	}
	var removed []string
	for name := range policy.RemovedBuiltins() {
		removed = append(removed, name)
	}
	slices.Sort(removed)
	if got := section("removed builtins"); !slices.Equal(got, removed) {
		t.Errorf("documented as removed:\n%v\nremoved:\n%v", got, removed)
	}
}

// A format the engine accepts cannot make sprintf's output much larger
// than the format: what the check is for, since the format is bundle
// content and one sprintf call cannot be interrupted.
func FuzzCheckFormat(f *testing.F) {
	for _, s := range []string{"%d", "%05.2f%%", "%[1]*d", "%.*f", "%100d", "%101d", "100%%1000000d", "%-+# 0100.100v", "%[2]9999d", "%[1", "%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, format string) {
		if len(format) > 256 || policy.CheckFormat(format) != nil {
			return
		}
		args := []any{int64(1), 2.5, "three", int64(-4), true, "x", int64(7), 8.0, "nine", int64(10)}
		out := fmt.Sprintf(format, args...)
		if limit := len(format)*(policy.MaxFormatWidth+64) + 1024; len(out) > limit {
			t.Fatalf("format %q was accepted and gave %d bytes (more than %d)", format, len(out), limit)
		}
	})
}

// A checked or removed builtin cannot stand in for another function with
// "with": its arguments would not be checked (sprintf with a format from
// input, through a function that calls concat).
func TestWithCannotSmuggleABuiltin(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, rule, says string }{
		{"sprintf for concat", `x := f(input.args.format, ["1"]) with concat as sprintf`, "sprintf cannot replace"},
		{"a removed builtin", `x := json.marshal(input) with json.marshal as yaml.marshal`, "yaml.marshal cannot replace"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			src := "package warden.authz\n\nf(a, b) := concat(a, b)\n\nallow if {\n\t" + c.rule + "\n\tx != \"\"\n}\n"
			_, err := policy.Compile(context.Background(), bundle(map[string]string{"p.rego": src}), policy.EngineConfig{})
			if !errors.Is(err, policy.ErrInvalidBundle) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("compile: %v, want a refusal saying %q", err, c.says)
			}
		})
	}
}
