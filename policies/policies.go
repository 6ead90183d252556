// Package policies holds the shipped policy bundles, built into the warden
// binary so that `warden demo` and a fresh install have them.
//
// The scenario bundles carry copies of the baseline's guardrails and role
// checks: a bundle may not link to files outside its own directory. Bundle
// builds them from the baseline's files, and a test checks that every
// directory holds the same bundle, so the copies cannot drift apart.
package policies

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"

	"github.com/warden-run/warden/internal/policy"
)

//go:embed baseline/*.rego baseline/*.json baseline/cases/*.yaml
//go:embed finance/policy*.rego finance/grants*.rego finance/*.json finance/cases/*.yaml
//go:embed healthcare/policy*.rego healthcare/grants*.rego healthcare/*.json healthcare/cases/*.yaml
//go:embed manufacturing/policy*.rego manufacturing/*.json manufacturing/cases/*.yaml
var files embed.FS

// Names are the shipped bundles.
var Names = []string{"baseline", "finance", "healthcare", "manufacturing"}

// shared are the baseline's files every scenario bundle holds a copy of.
var shared = []string{"guardrails.rego", "guardrails_test.rego", "rbac.rego", "rbac_test.rego", "response.rego", "response_test.rego"}

// Bundle returns a shipped bundle by name.
func Bundle(name string) (*policy.Bundle, error) {
	if !slices.Contains(Names, name) {
		return nil, fmt.Errorf("no shipped bundle %q (there are %v)", name, Names)
	}
	b := &policy.Bundle{Files: map[string][]byte{}}
	err := fs.WalkDir(files, name, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := files.ReadFile(p)
		b.Files[p[len(name)+1:]] = data
		return err
	})
	if err != nil {
		return nil, err
	}
	if name != "baseline" {
		for _, f := range shared {
			data, err := files.ReadFile(path.Join("baseline", f))
			if err != nil {
				return nil, err
			}
			b.Files[f] = data
		}
	}
	if err := b.Check(); err != nil {
		return nil, err
	}
	return b, nil
}
