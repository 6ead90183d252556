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

// Enrich returns the attributes a decision sees for a resource: the
// catalog's when it has an entry for the resource, else those the
// enforcement point sent. The catalog is the authority: what an
// enforcement point sends about a resource it knows is ignored, so that a
// compromised or misconfigured one cannot declare a write a read.
func (c Catalog) Enrich(kind, id string, sent map[string]any) map[string]any {
	if known := c.Attributes(kind, id); known != nil {
		return known
	}
	if sent == nil {
		return map[string]any{}
	}
	return sent
}
