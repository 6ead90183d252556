package policies_test

import (
	"context"
	"strings"
	"testing"

	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/policies"
)

// The built-in bundles are the directories, file for file.
func TestBuiltInBundlesAreTheDirectories(t *testing.T) {
	t.Parallel()
	for _, name := range policies.Names {
		embedded, err := policies.Bundle(name)
		if err != nil {
			t.Fatal(err)
		}
		dir, err := policy.LoadDir(name)
		if err != nil {
			t.Fatal(err)
		}
		if embedded.Digest() != dir.Digest() {
			t.Errorf("%s: the built-in bundle (%d files) differs from the directory (%d files)", name, len(embedded.Files), len(dir.Files))
		}
	}
	if _, err := policies.Bundle("nope"); err == nil {
		t.Fatal("an unknown bundle name was accepted")
	}
}

// Every shipped bundle passes its own unit tests and decision cases: it
// could not be activated otherwise.
func TestShippedBundlesPassTheirTests(t *testing.T) {
	t.Parallel()
	for _, name := range policies.Names {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, err := policies.Bundle(name)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := policy.Test(context.Background(), b, policy.TestOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Passed {
				var out strings.Builder
				rep.WriteText(&out, false)
				t.Fatalf("%s does not pass its tests:\n%s", name, out.String())
			}
		})
	}
}
