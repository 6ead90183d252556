package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Catalog is the resource catalog of a bundle: the attributes of resources
// by kind and id, from the data document's "resources" object:
//
//	{"resources": {"mcp.tool": {"market-data/*": {"trust_domain": "prod", "read_only": true},
//	                            "market-data/level2": {"licensed": true}}}}
//
// An id ending in "*" is a prefix pattern ("*" alone matches every id). A
// resource's attributes are those of every entry that matches it, the more
// specific overriding the more general: patterns from the shortest prefix
// to the longest, then the exact id.
type Catalog struct {
	kinds map[string]*kindCatalog
}

type kindCatalog struct {
	exact    map[string]map[string]any
	prefixes []prefixEntry // shortest first
}

type prefixEntry struct {
	prefix string
	attrs  map[string]any
}

func parseCatalog(data map[string]any) (Catalog, error) {
	c := Catalog{kinds: map[string]*kindCatalog{}}
	raw, ok := data["resources"]
	if !ok {
		return c, nil
	}
	kinds, ok := raw.(map[string]any)
	if !ok {
		return c, fmt.Errorf("%w: data.resources must be an object of resource kinds", ErrInvalidBundle)
	}
	for kind, v := range kinds {
		ids, ok := v.(map[string]any)
		if !ok {
			return c, fmt.Errorf("%w: data.resources[%q] must be an object of resource ids", ErrInvalidBundle, kind)
		}
		kc := &kindCatalog{exact: map[string]map[string]any{}}
		for id, a := range ids {
			attrs, ok := a.(map[string]any)
			if !ok {
				return c, fmt.Errorf("%w: data.resources[%q][%q] must be an object of attributes", ErrInvalidBundle, kind, id)
			}
			if p, ok := strings.CutSuffix(id, "*"); ok {
				kc.prefixes = append(kc.prefixes, prefixEntry{p, attrs})
			} else {
				kc.exact[id] = attrs
			}
		}
		slices.SortFunc(kc.prefixes, func(a, b prefixEntry) int { return len(a.prefix) - len(b.prefix) })
		c.kinds[kind] = kc
	}
	return c, nil
}

// Attributes returns the catalog's attributes of a resource, nil when no
// entry matches it.
func (c Catalog) Attributes(kind, id string) map[string]any {
	kc := c.kinds[kind]
	if kc == nil {
		return nil
	}
	var out map[string]any
	merge := func(attrs map[string]any) {
		if out == nil {
			out = make(map[string]any, len(attrs))
		}
		maps.Copy(out, attrs)
	}
	for _, p := range kc.prefixes {
		if strings.HasPrefix(id, p.prefix) {
			merge(p.attrs)
		}
	}
	if a, ok := kc.exact[id]; ok {
		merge(a)
	}
	return out
}

// Enrich returns the attributes a decision sees for a resource: those the
// enforcement point sent, overlaid by the catalog's key by key. The catalog
// is the authority, so that a compromised or misconfigured enforcement
// point cannot declare a write a read; but an enforcement point may add
// restriction, never have it dropped, so the security attributes (see
// mergeSecurity) take the more restrictive of the two values.
func (c Catalog) Enrich(kind, id string, sent map[string]any) map[string]any {
	known := c.Attributes(kind, id)
	out := make(map[string]any, len(sent)+len(known))
	maps.Copy(out, sent)
	for k, v := range known {
		if s, ok := sent[k]; ok {
			out[k] = mergeSecurity(k, v, s)
		} else {
			out[k] = v
		}
	}
	return out
}

// Security attributes and which of their values restrict more.
var (
	// raising: true restricts more (the resource sends data out, holds
	// personal data, acts on the physical world, destroys).
	raising = []string{"egress", "pii", "phi", "external", "physical", "destructive"}
	// lowering: false restricts more (a tool that only reads).
	lowering = []string{"read_only"}
	// sensitivity levels, least first; a level neither side knows the
	// order of counts as the highest.
	sensitivity = []string{"public", "internal", "confidential", "restricted"}
)

// CheckAttributes says what is wrong with resource attributes that an
// enforcement point's configuration sets, one problem per attribute: a
// security attribute whose value is not of its type (egress: "yes") would
// be left out of the merge, silently, and a rule testing it would never
// hold. A sensitivity level that is not one of the known ones counts as
// the highest, so it is accepted.
func CheckAttributes(attrs map[string]any) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		v := attrs[k]
		switch {
		case slices.Contains(raising, k) || slices.Contains(lowering, k):
			if _, ok := v.(bool); !ok {
				out = append(out, fmt.Sprintf("%s %v: want true or false", k, v))
			}
		case k == "sensitivity":
			if _, ok := v.(string); !ok {
				out = append(out, fmt.Sprintf("sensitivity %v: want a level such as %s", v, strings.Join(sensitivity, ", ")))
			}
		case k == "trust":
			if v != "trusted" && v != "untrusted" {
				out = append(out, fmt.Sprintf("trust %v: trusted or untrusted", v))
			}
		}
	}
	return out
}

// mergeSecurity returns the value of attribute k when the catalog says
// known and the enforcement point sent: the catalog's, except for the
// security attributes, which keep the more restrictive of the two.
func mergeSecurity(k string, known, sent any) any {
	switch {
	case slices.Contains(raising, k):
		if sent == true {
			return true
		}
	case slices.Contains(lowering, k):
		if sent == false {
			return false
		}
	case k == "trust":
		// "untrusted" from either side wins (it is what taints); then
		// anything but "trusted" restricts more.
		if sent == "untrusted" || known == "untrusted" {
			return "untrusted"
		}
		if known == "trusted" && sent != "trusted" {
			return sent
		}
	case k == "sensitivity":
		if level(sent) > level(known) {
			return sent
		}
	}
	return known
}

func level(v any) int {
	s, _ := v.(string)
	if i := slices.Index(sensitivity, s); i >= 0 {
		return i
	}
	return len(sensitivity)
}
