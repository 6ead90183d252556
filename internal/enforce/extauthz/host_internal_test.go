package extauthz

import "testing"

// Envoy matches virtual hosts without regard to case, a trailing dot or
// the default port: policy decides on the host as it matches.
func TestCanonicalHost(t *testing.T) {
	for in, want := range map[string]string{
		"crm.mesh.test":       "crm.mesh.test",
		"CRM.Mesh.Test":       "crm.mesh.test",
		"crm.mesh.test.":      "crm.mesh.test",
		"crm.mesh.test:443":   "crm.mesh.test",
		"CRM.mesh.test.:443":  "crm.mesh.test",
		"crm.mesh.test:8443":  "crm.mesh.test:8443",
		"crm.mesh.test.:8443": "crm.mesh.test:8443",
		"[::1]:443":           "[::1]",
		"[::1]:8443":          "[::1]:8443",
		"crm.mesh.test:80":    "crm.mesh.test:80", // https: 80 is not its default
	} {
		if got := canonicalHost("https", in); got != want {
			t.Errorf("canonicalHost(https, %q) = %q, want %q", in, got, want)
		}
	}
	if got := canonicalHost("http", "crm.mesh.test:80"); got != "crm.mesh.test" {
		t.Errorf("canonicalHost(http, crm.mesh.test:80) = %q", got)
	}
}
