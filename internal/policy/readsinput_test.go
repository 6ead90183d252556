package policy_test

import (
	"context"
	"testing"

	"github.com/warden-run/warden/internal/policy"
)

// ReadsInput says true of every path a rule can reach, however it reaches
// it, and false only of what no rule reads.
func TestReadsInput(t *testing.T) {
	head := "package warden.authz\n\ndefault allow := false\n\n"
	args := []string{"context", "provenance", "args"}
	for _, c := range []struct {
		name  string
		rule  string
		reads bool
	}{
		{"no rule reads it", `allow if input.context.provenance.known`, false},
		{"a sibling is read", `allow if count(input.context.provenance.untrusted) == 0`, false},
		{"the path", `allow if count(input.context.provenance.args) > 0`, true},
		{"a path inside it", `allow if input.context.provenance.args.to.only_untrusted`, true},
		{"a member, by a variable", `allow if { some p, o in input.context.provenance.args; o.only_untrusted }`, true},
		{"an object that holds it", `allow if { p := input.context.provenance; count(p) > 2 }`, true},
		{"a key computed at evaluation", `allow if { k := "prov"; input.context[k] }`, true},
		{"the whole input", `allow if { x := input; x.action == "a" }`, true},
		{"through a function", "allow if f(input.context)\n\nf(c) if c.provenance.args.to", true},
		// The compiler passes a call's operands through variables, so
		// what object.get reads of an input object is not known: all of
		// that object may be read.
		{"object.get of the object that holds it", `allow if object.get(input.context, ["provenance", "args"], {}) != {}`, true},
		{"object.get of the whole input", `allow if object.get(input, ["context", "time"], "") != ""`, true},
		{"object.get of another object", `allow if object.get(input.resource, "id", "") != ""`, false},
		{"object.get with a computed path", `allow if { p := ["context"]; object.get(input, p, null) }`, true},
		{"walk", `allow if { walk(input, [p, v]); v == "x" }`, true},
		{"with", "allow if g with input.action as \"a\"\n\ng if input.action == \"a\"", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := compile(t, head+c.rule+"\n", policy.EngineConfig{})
			if got := e.ReadsInput(args...); got != c.reads {
				t.Errorf("ReadsInput(context.provenance.args) = %v, want %v", got, c.reads)
			}
		})
	}
}

// The shipped bundles read the summary of the arguments' provenance, never
// each argument's detail, which the decision point then leaves out of the
// input (docs/benchmarks.md, what provenance costs).
func TestShippedBundlesReadTheProvenanceSummary(t *testing.T) {
	eachShippedBundle(t, func(t *testing.T, b *policy.Bundle, _ []policy.Case) {
		e, err := policy.Compile(context.Background(), b, policy.EngineConfig{})
		if err != nil {
			t.Fatal(err)
		}
		if e.ReadsInput("context", "provenance", "args") {
			t.Error("a rule reads context.provenance.args")
		}
		if !e.ReadsInput("context", "provenance", "untrusted") {
			t.Error("no rule reads context.provenance.untrusted")
		}
	})
}
