package policies_test

import (
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
