package policy_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/policy"
)

func bundle(files map[string]string) *policy.Bundle {
	b := &policy.Bundle{Files: map[string][]byte{}}
	for p, c := range files {
		b.Files[p] = []byte(c)
	}
	return b
}

func compile(t *testing.T, rego string, cfg policy.EngineConfig) *policy.Engine {
	t.Helper()
	e, err := policy.Compile(context.Background(), bundle(map[string]string{"policy.rego": rego}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Every way a policy can fail to decide is a deny, with a reason that says which.
func TestFailClosed(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		rego    string
		input   map[string]any
		outcome policy.Outcome
		reasons []string
		err     error
	}{
		{"allowed", "package warden.authz\nallow if input.action == \"read\"",
			map[string]any{"action": "read"}, policy.Allow, []string{}, nil},
		{"not allowed", "package warden.authz\ndefault allow := false\nallow if input.action == \"read\"",
			map[string]any{"action": "write"}, policy.Deny, []string{policy.ReasonNotAllowed}, nil},
		{"allow undefined", "package warden.authz\nallow if input.action == \"read\"",
			map[string]any{"action": "write"}, policy.Deny, []string{policy.ReasonUndefined}, nil},
		{"no allow rule at all", "package warden.authz\ndeny contains \"x\" if false",
			map[string]any{}, policy.Deny, []string{policy.ReasonUndefined}, nil},
		{"deny wins over allow", "package warden.authz\nallow := true\ndeny contains \"pii\" if input.pii\ndeny contains \"night\" if input.night",
			map[string]any{"pii": true, "night": true}, policy.Deny, []string{"night", "pii"}, nil},
		{"conflicting values", "package warden.authz\nallow := true if input.a\nallow := false if input.b",
			map[string]any{"a": true, "b": true}, policy.Deny, []string{policy.ReasonConflict}, policy.ErrConflict},
		{"builtin error is an error, not undefined", "package warden.authz\nallow := true\ndeny contains \"too much\" if to_number(input.amount) > 100",
			map[string]any{"amount": "lots"}, policy.Deny, []string{policy.ReasonError}, policy.ErrEvaluation},
		{"runtime error", "package warden.authz\nallow if input.n / input.d > 1",
			map[string]any{"n": 1, "d": 0}, policy.Deny, []string{policy.ReasonError}, policy.ErrEvaluation},
		{"allow not a boolean", "package warden.authz\nallow := \"yes\"",
			map[string]any{}, policy.Deny, []string{policy.ReasonMalformed}, policy.ErrMalformedResult},
		{"deny not a set", "package warden.authz\nallow := true\ndeny := true",
			map[string]any{}, policy.Deny, []string{policy.ReasonMalformed}, policy.ErrMalformedResult},
		{"deny reason not a string", "package warden.authz\nallow := true\ndeny contains 42 if true",
			map[string]any{}, policy.Deny, []string{policy.ReasonMalformed}, policy.ErrMalformedResult},
		{"obligations not an object", "package warden.authz\nallow := true\nobligations := [1]",
			map[string]any{}, policy.Deny, []string{policy.ReasonMalformed}, policy.ErrMalformedResult},
		{"too slow", "package warden.authz\nallow if count([x | some x in numbers.range(1, 100000000)]) > 0",
			map[string]any{}, policy.Deny, []string{policy.ReasonTimeout}, policy.ErrTimeout},
		{"approvals required, none given", "package warden.authz\nallow := true\nobligations := {\"require_approvals\": {\"count\": 2, \"roles\": [\"safety\"]}}",
			map[string]any{}, policy.PendingApproval, []string{policy.ReasonApprovalRequired}, nil},
		{"approvals met", "package warden.authz\nallow := true\nobligations := {\"require_approvals\": {\"count\": 2, \"roles\": [\"safety\"]}}",
			map[string]any{"context": map[string]any{"approvals": []any{
				map[string]any{"by": "ana", "role": "safety"}, map[string]any{"by": "bo", "role": "safety"}}}},
			policy.Allow, []string{}, nil},
		{"one approver twice is one approval", "package warden.authz\nallow := true\nobligations := {\"require_approvals\": {\"count\": 2}}",
			map[string]any{"context": map[string]any{"approvals": []any{
				map[string]any{"by": "ana", "role": "safety"}, map[string]any{"by": "ana", "role": "safety"}}}},
			policy.PendingApproval, []string{policy.ReasonApprovalRequired}, nil},
		{"only named approvers count", "package warden.authz\nallow := true\nobligations := {\"require_approvals\": {\"count\": 2, \"approvers\": [\"ana\", \"bo\", \"cy\"]}}",
			map[string]any{"context": map[string]any{"approvals": []any{
				map[string]any{"by": "ana", "role": "safety"}, map[string]any{"by": "eve", "role": "safety"}}}},
			policy.PendingApproval, []string{policy.ReasonApprovalRequired}, nil},
		{"an approval condition Warden does not know", "package warden.authz\nallow := true\nobligations := {\"require_approvals\": {\"count\": 1, \"quorum\": \"all\"}}",
			map[string]any{}, policy.Deny, []string{policy.ReasonMalformed}, nil},
		{"a policy reason in Warden's namespace", "package warden.authz\nallow := true\ndeny contains \"warden.not_allowed\" if true",
			map[string]any{}, policy.Deny, []string{policy.ReasonMalformed}, policy.ErrMalformedResult},
		{"approvals rule malformed", "package warden.authz\nallow := true\nobligations := {\"require_approvals\": {\"count\": \"two\"}}",
			map[string]any{}, policy.Deny, []string{policy.ReasonMalformed}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Only the slow case needs a short timeout; on a busy machine a
			// short one could time the others out.
			timeout := 10 * time.Second
			if tc.err == policy.ErrTimeout {
				timeout = 30 * time.Millisecond
			}
			e := compile(t, tc.rego, policy.EngineConfig{Timeout: timeout})
			res, err := e.Evaluate(context.Background(), tc.input, time.Now())
			if tc.err != nil && !errors.Is(err, tc.err) || tc.err == nil && err != nil {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			var approvals []any
			if cx, ok := tc.input["context"].(map[string]any); ok {
				approvals, _ = cx["approvals"].([]any)
			}
			v := policy.Judge(res, err, approvals)
			slices.Sort(v.Reasons)
			if v.Outcome != tc.outcome || !slices.Equal(v.Reasons, tc.reasons) {
				t.Fatalf("verdict %s %q, want %s %q", v.Outcome, v.Reasons, tc.outcome, tc.reasons)
			}
			if v.Outcome == policy.Deny && v.Obligations != nil {
				t.Fatalf("a deny carries obligations %v", v.Obligations)
			}
		})
	}
}

// A bundle that is not a valid policy never compiles, and says why.
func TestCompileRefusals(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		files map[string]string
		says  string
	}{
		{"syntax error", map[string]string{"p.rego": "package warden.authz\nallow if {"}, "p.rego:"},
		{"Rego v0 syntax", map[string]string{"p.rego": "package warden.authz\nallow { true }"}, "p.rego:"},
		{"no warden.authz", map[string]string{"p.rego": "package other\nallow := true"}, "no module declares package warden.authz"},
		{"warden.authz only in a test", map[string]string{"p.rego": "package other\nx := 1", "p_test.rego": "package warden.authz\ntest_x if true"}, "no module declares package warden.authz"},
		{"the engine's package", map[string]string{"p.rego": "package warden.authz\nallow := true", "e.rego": "package system.warden\ndecision := {}"}, "reserved"},
		{"network builtin", map[string]string{"p.rego": "package warden.authz\nallow if http.send({\"method\": \"GET\", \"url\": \"http://x\"}).status_code == 200"}, "http.send"},
		{"unsafe variable", map[string]string{"p.rego": "package warden.authz\nallow if x > 1"}, "unsafe"},
		{"data not an object", map[string]string{"p.rego": "package warden.authz\nallow := true", "data.json": "[1]"}, "must be an object"},
		{"data not JSON", map[string]string{"p.rego": "package warden.authz\nallow := true", "data.json": "{"}, "data.json"},
		{"two data documents", map[string]string{"p.rego": "package warden.authz\nallow := true", "data.json": "{}", "data.yaml": "a: 1"}, "more than one data document"},
		{"catalog malformed", map[string]string{"p.rego": "package warden.authz\nallow := true", "data.json": `{"resources": {"mcp.tool": []}}`}, "data.resources"},
		{"a path escaping the bundle", map[string]string{"../p.rego": "package warden.authz\nallow := true"}, "not a clean relative path"},
		{"a file that is not bundle content", map[string]string{"p.rego": "package warden.authz\nallow := true", "notes.txt": "x"}, "not a bundle file"},
		{"manifest not JSON", map[string]string{"p.rego": "package warden.authz\nallow := true", ".manifest": "revision: 1"}, ".manifest is not JSON"},
		// OPA's store panicked on these, taking down whatever compiled the
		// bundle (the server's watcher, a replica following an activation).
		{"a number beyond OPA's range in data.json", map[string]string{"p.rego": "package warden.authz\nallow := true", "data.json": `{"limit": 1e400000}`}, "out of range"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := policy.Compile(context.Background(), bundle(tc.files), policy.EngineConfig{})
			if !errors.Is(err, policy.ErrInvalidBundle) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("compile: %v, want ErrInvalidBundle saying %q", err, tc.says)
			}
		})
	}
}

func TestDigestIsContentOnly(t *testing.T) {
	t.Parallel()
	a := bundle(map[string]string{"a.rego": "package warden.authz\nallow := true", "data.json": "{}"})
	b := bundle(map[string]string{"data.json": "{}", "a.rego": "package warden.authz\nallow := true"})
	c := bundle(map[string]string{"a.rego": "package warden.authz\nallow := false", "data.json": "{}"})
	d := bundle(map[string]string{"b.rego": "package warden.authz\nallow := true", "data.json": "{}"})
	if a.Digest() != b.Digest() || !strings.HasPrefix(a.Digest(), "sha256:") || len(a.Digest()) != 71 {
		t.Fatalf("same files, digests %s and %s", a.Digest(), b.Digest())
	}
	if a.Digest() == c.Digest() || a.Digest() == d.Digest() {
		t.Fatal("different content or names, same digest")
	}
}

func TestCatalog(t *testing.T) {
	t.Parallel()
	e, err := policy.Compile(context.Background(), bundle(map[string]string{
		"p.rego": "package warden.authz\nallow := true",
		"data.yaml": `resources:
  mcp.tool:
    market-data/get_quote: {sensitivity: public}
    market-data/*: {sensitivity: internal, owner: quant}
    "*": {sensitivity: unknown}
`,
	}), policy.EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	c := e.Resources()
	for _, tc := range []struct{ id, want string }{
		{"market-data/get_quote", "public"}, {"market-data/history", "internal"}, {"crm/customer", "unknown"},
	} {
		if tc.id == "market-data/get_quote" && c.Attributes("mcp.tool", tc.id)["owner"] != "quant" {
			t.Errorf("the exact entry does not keep the pattern's owner: %v", c.Attributes("mcp.tool", tc.id))
		}
		if got := c.Attributes("mcp.tool", tc.id)["sensitivity"]; got != tc.want {
			t.Errorf("%s: sensitivity %v, want %s", tc.id, got, tc.want)
		}
	}
	if c.Attributes("http.route", "x") != nil {
		t.Error("an unknown kind has attributes")
	}
	if got := c.Attributes("mcp.tool", "market-data/history"); got["owner"] != "quant" {
		t.Fatalf("a longer pattern keeps what a shorter one says: %v", got)
	}
	got := c.Enrich("mcp.tool", "market-data/history", map[string]any{"sensitivity": "public", "rows": 10})
	if got["sensitivity"] != "internal" || got["rows"] != 10 || got["owner"] != "quant" {
		t.Fatalf("enriched %v: the catalog's attributes over what was sent, key by key", got)
	}
	if got := c.Enrich("http.route", "x", map[string]any{"rows": 10}); got["rows"] != 10 {
		t.Fatalf("a resource the catalog does not know keeps what was sent: %v", got)
	}
}

// Rules that depend on the data alone are computed once per version and
// kept; anything that depends on the input, even through a function or a
// with, is computed every time.
func TestConstantRules(t *testing.T) {
	t.Parallel()
	e, err := policy.Compile(context.Background(), bundle(map[string]string{
		"policy.rego": `package warden.authz

allow if {
	configured
	input.role in roles
	not blocked
	scaled == input.want
}

configured if count(data.roles) > 0

roles contains r if some r in data.roles

# Depends on the input through a function.
blocked if over_limit(data.limit)

over_limit(l) if input.amount > l

# Depends on the input through with.
scaled := x if x := double with input.n as data.limit

double := input.n * 2

# Depends on the clock.
deny contains "late" if time.now_ns() > data.deadline_ns
`,
		"data.json": `{"roles": ["reader"], "limit": 10, "deadline_ns": 2000000000000000000}`,
	}), policy.EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		input map[string]any
		at    time.Time
		allow bool
		deny  int
	}{
		{map[string]any{"role": "reader", "amount": 5, "want": 20}, time.Unix(0, 0), true, 0},
		{map[string]any{"role": "writer", "amount": 5, "want": 20}, time.Unix(0, 0), false, 0},
		{map[string]any{"role": "reader", "amount": 50, "want": 20}, time.Unix(0, 0), false, 0},
		{map[string]any{"role": "reader", "amount": 5, "want": 20}, time.Unix(2100000000, 0), true, 1},
		{map[string]any{"role": "reader", "amount": 5, "want": 20}, time.Unix(0, 0), true, 0},
	} {
		res, err := e.Evaluate(context.Background(), tc.input, tc.at)
		if err != nil || res.Allow != tc.allow || len(res.Deny) != tc.deny {
			t.Fatalf("evaluation %d: %+v %v, want allow %v and %d reasons", i, res, err, tc.allow, tc.deny)
		}
	}
	got := policy.ConstantRules(e)
	// (This policy has no obligations rule, so the engine's reading of it is constant too.)
	want := []string{"data.system.warden.obligations", "data.warden.authz.configured", "data.warden.authz.roles"}
	if !slices.Equal(got, want) {
		t.Fatalf("constant rules %q, want %q", got, want)
	}
	// Kept per input: what reads the input through a function, or asks the
	// clock; not what uses with, nor what depends on it (allow).
	got = policy.KeyedRules(e)
	want = []string{"data.system.warden.deny", "data.warden.authz.blocked", "data.warden.authz.deny", "data.warden.authz.double"}
	if !slices.Equal(got, want) {
		t.Fatalf("rules kept per input %q, want %q", got, want)
	}
}

// bench/pdp-vs-opa.sh gives OPA the engine's query module: it must be the same.
func TestBenchmarkAsksOPATheSameQuery(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../bench/opa/decision.rego")
	if err != nil {
		t.Fatal(err)
	}
	_, module, _ := strings.Cut(string(b), "package ")
	if "package "+module != policy.EngineModule {
		t.Fatalf("bench/opa/decision.rego differs from the engine's query module:\n%s", module)
	}
}

// Identical inputs in the same second are evaluated once; anything else,
// and any bundle that is not a function of its input, is evaluated anew.
func TestEvaluateKeyed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := compile(t, "package warden.authz\nallow if input.n < 10\ndeny contains \"late\" if time.now_ns() > 1000000000000000000", policy.EngineConfig{})
	key := func(s string) [32]byte { return sha256.Sum256([]byte(s)) }
	t0 := time.Unix(999999999, 0)
	for i, tc := range []struct {
		input map[string]any
		key   string
		at    time.Time
		allow bool
		deny  int
		hits  int64
	}{
		{map[string]any{"n": 1}, "a", t0, true, 0, 0},
		{map[string]any{"n": 1}, "a", t0, true, 0, 1},                       // same second, same input: kept
		{map[string]any{"n": 50}, "b", t0, false, 0, 1},                     // another input
		{map[string]any{"n": 1}, "a", t0.Add(time.Second), true, 0, 1},      // another second
		{map[string]any{"n": 1}, "a", time.Unix(1000000001, 0), true, 1, 1}, // the clock is in the key
	} {
		res, err := e.EvaluateKeyed(ctx, tc.input, nil, key(tc.key), tc.at)
		if err != nil || res.Allow != tc.allow || len(res.Deny) != tc.deny {
			t.Fatalf("evaluation %d: %+v %v", i, res, err)
		}
		if hits, _ := e.MemoStats(); hits != tc.hits {
			t.Fatalf("evaluation %d: %d results reused, want %d", i, hits, tc.hits)
		}
	}
	// Not a function of its input: never reused.
	r := compile(t, "package warden.authz\nallow if rand.intn(\"x\", 2) == 0", policy.EngineConfig{})
	for range 3 {
		r.EvaluateKeyed(ctx, map[string]any{}, nil, key("x"), t0)
	}
	if hits, misses := r.MemoStats(); hits != 0 || misses != 0 {
		t.Fatalf("a non-deterministic bundle: %d hits, %d misses, want no memo at all", hits, misses)
	}
}

// Kept rule values never change a result: on every shipped bundle, inputs
// recombined from its cases at random get from an engine that keeps rules
// exactly what an engine that evaluates everything gives.
func TestKeptRulesChangeNothing(t *testing.T) {
	t.Parallel()
	eachShippedBundle(t, func(t *testing.T, b *policy.Bundle, cases []policy.Case) {
		ctx := context.Background()
		kept, err := policy.Compile(ctx, b, policy.EngineConfig{Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		plain, err := policy.Compile(ctx, b, policy.EngineConfig{Timeout: time.Second, NoRuleCache: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(cases) < 5 {
			t.Fatalf("%d cases, want at least 5", len(cases))
		}
		// Every top-level part of an input (agent, action, resource,
		// args, context) and every part of the context, from any case.
		pick := func(rnd *rand.Rand) map[string]any {
			in := map[string]any{}
			for _, k := range []string{"agent", "action", "resource", "args"} {
				if v, ok := cases[rnd.IntN(len(cases))].Input[k]; ok {
					in[k] = v
				}
			}
			cx := map[string]any{}
			for _, k := range []string{"time", "source", "risk", "session", "grants", "delegation", "approvals"} {
				if c, ok := cases[rnd.IntN(len(cases))].Input["context"].(map[string]any); ok {
					if v, ok := c[k]; ok {
						cx[k] = v
					}
				}
			}
			in["context"] = cx
			return in
		}
		rnd := rand.New(rand.NewPCG(1, uint64(len(t.Name()))))
		for i := range 3000 {
			in := pick(rnd)
			at := time.Date(2026, 3, 10, 15, 0, 0, 0, time.UTC).Add(time.Duration(rnd.IntN(3)) * 7 * time.Hour)
			got, gerr := kept.Evaluate(ctx, in, at)
			want, werr := plain.Evaluate(ctx, in, at)
			if (gerr == nil) != (werr == nil) || !sameResult(got, want) {
				raw, _ := json.Marshal(in)
				t.Fatalf("input %d: kept %+v %v, evaluated %+v %v\n%s", i, got, gerr, want, werr, raw)
			}
		}
		if len(policy.KeyedRules(kept)) == 0 {
			t.Fatal("no rule kept per input: the test proves nothing")
		}
	})
}

// eachShippedBundle runs f on every bundle in policies/, each in a
// parallel subtest, with its decision cases.
func eachShippedBundle(t *testing.T, f func(t *testing.T, b *policy.Bundle, cases []policy.Case)) {
	dirs, _ := filepath.Glob("../../policies/*")
	n := 0
	for _, dir := range dirs {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			continue
		}
		n++
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Parallel()
			b, err := policy.LoadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			cases, err := policy.LoadCases(b)
			if err != nil {
				t.Fatal(err)
			}
			f(t, b, cases)
		})
	}
	if n == 0 {
		t.Fatal("no shipped bundle found")
	}
}

func sameResult(a, b policy.Result) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// Rules that define one document together are not kept apart: t.a from
// the first must not hide the conflict the second makes.
func TestOverlappingRulesAreNotKept(t *testing.T) {
	t.Parallel()
	e := compile(t, `package warden.authz

t["a"] := 1

t[k] := 2 if some k in input.ks

allow if t.a == 1
`, policy.EngineConfig{})
	ctx := context.Background()
	at := time.Unix(0, 0)
	if res, err := e.Evaluate(ctx, map[string]any{"ks": []any{"b"}}, at); err != nil || !res.Allow {
		t.Fatalf("without a conflict: %+v %v", res, err)
	}
	if _, err := e.Evaluate(ctx, map[string]any{"ks": []any{"a"}}, at); !errors.Is(err, policy.ErrConflict) {
		t.Fatalf("t.a defined twice: %v, want a conflict", err)
	}
	if kept := policy.ConstantRules(e); slices.Contains(kept, "data.warden.authz.t.a") {
		t.Fatalf("kept %q", kept)
	}
}

// A rule that reads a large input is not kept: an agent's megabyte of
// arguments, in 4,096 values of each rule that reads them, would hold
// gigabytes. A small input still is.
func TestLargeInputsAreNotKept(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Evaluating 64 KB keys on a loaded machine can take longer than the
	// default timeout; this test is about what is kept, not how fast.
	e := compile(t, "package warden.authz\n\nblocked contains k if { some k, _ in input.args.body }\ndeny contains \"blocked\" if count(blocked) > 0\n",
		policy.EngineConfig{Timeout: 10 * time.Second})
	if len(policy.KeyedRules(e)) == 0 {
		t.Fatal("no rule kept per input: the test proves nothing")
	}
	at := time.Unix(1_800_000_000, 0)
	first := 0 // the values of the rules that read no input
	for i := range 20 {
		big := map[string]any{"args": map[string]any{"body": map[string]any{fmt.Sprintf("%d%s", i, strings.Repeat("x", 64<<10)): 1}}}
		if r, err := e.Evaluate(ctx, big, at); err != nil || len(r.Deny) == 0 {
			t.Fatalf("%+v %v", r, err)
		}
		if i == 0 {
			first = policy.KeptValues(e)
		}
	}
	if n := policy.KeptValues(e); n != first {
		t.Fatalf("%d values kept after 20 large inputs, %d after the first", n, first)
	}
	if _, err := e.Evaluate(ctx, map[string]any{"args": map[string]any{"body": map[string]any{"k": 1}}}, at); err != nil {
		t.Fatal(err)
	}
	if n := policy.KeptValues(e); n <= first {
		t.Fatal("a small input's values were not kept")
	}
}
