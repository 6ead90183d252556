package policy_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/warden-run/warden/internal/policy"
)

// An enforcement point's attributes may add restriction to what the
// catalog says of a resource, never remove it; the catalog wins every
// other key.
func TestCatalogMergeKeepsRestriction(t *testing.T) {
	t.Parallel()
	e, err := policy.Compile(context.Background(), bundle(map[string]string{
		"policy.rego": "package warden.authz\nallow if true\n",
		"data.json": `{"resources": {"mcp.tool": {
			"kb/*": {"read_only": true, "trust": "trusted", "sensitivity": "internal", "owner": "docs"},
			"kb/exact": {"egress": false, "pii": false},
			"kb/odd": {"trust": "unknown"}}}}`,
	}), policy.EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	c := e.Resources()
	for _, tc := range []struct {
		name string
		id   string
		sent map[string]any
		want map[string]any
	}{
		{"egress from the enforcement point survives a wildcard entry", "kb/search", map[string]any{"egress": true},
			map[string]any{"egress": true, "read_only": true, "trust": "trusted", "sensitivity": "internal", "owner": "docs"}},
		{"egress true wins over the catalog's false", "kb/exact", map[string]any{"egress": true, "pii": true},
			map[string]any{"egress": true, "pii": true, "read_only": true, "trust": "trusted", "sensitivity": "internal", "owner": "docs"}},
		{"a read cannot be declared by the enforcement point", "kb/exact", map[string]any{"read_only": true},
			map[string]any{"egress": false, "pii": false, "read_only": true, "trust": "trusted", "sensitivity": "internal", "owner": "docs"}},
		{"read_only false wins", "kb/search", map[string]any{"read_only": false},
			map[string]any{"read_only": false, "trust": "trusted", "sensitivity": "internal", "owner": "docs"}},
		{"untrusted wins over trusted", "kb/search", map[string]any{"trust": "untrusted"},
			map[string]any{"read_only": true, "trust": "untrusted", "sensitivity": "internal", "owner": "docs"}},
		{"untrusted wins over a trust the catalog made up", "kb/odd", map[string]any{"trust": "untrusted"},
			map[string]any{"read_only": true, "trust": "untrusted", "sensitivity": "internal", "owner": "docs"}},
		{"a higher sensitivity wins", "kb/search", map[string]any{"sensitivity": "restricted"},
			map[string]any{"read_only": true, "trust": "trusted", "sensitivity": "restricted", "owner": "docs"}},
		{"a lower sensitivity does not", "kb/search", map[string]any{"sensitivity": "public"},
			map[string]any{"read_only": true, "trust": "trusted", "sensitivity": "internal", "owner": "docs"}},
		{"an unknown sensitivity counts as the highest", "kb/search", map[string]any{"sensitivity": "top-secret"},
			map[string]any{"read_only": true, "trust": "trusted", "sensitivity": "top-secret", "owner": "docs"}},
		{"the catalog wins other keys", "kb/search", map[string]any{"owner": "mallory", "rows": 3},
			map[string]any{"read_only": true, "trust": "trusted", "sensitivity": "internal", "owner": "docs", "rows": 3}},
		{"a resource the catalog does not know keeps what was sent", "web/fetch", map[string]any{"egress": true},
			map[string]any{"egress": true}},
		{"nothing known, nothing sent", "web/fetch", nil, map[string]any{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.Enrich("mcp.tool", tc.id, tc.sent); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Enrich(%s, %v)\n got %v\nwant %v", tc.id, tc.sent, got, tc.want)
			}
		})
	}
}
