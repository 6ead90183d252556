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
//	{"resources": {"mcp.tool": {"market-data/get_quote": {"sensitivity": "public"},
//	                            "market-data/*": {"sensitivity": "internal"}}}}
//
// An id ending in "*" is a prefix pattern; the exact id wins, then the
// longest matching pattern.
type Catalog struct {
	kinds map[string]*kindCatalog
}

type kindCatalog struct {
	exact    map[string]map[string]any
	prefixes []prefixEntry // longest first
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
		slices.SortFunc(kc.prefixes, func(a, b prefixEntry) int { return len(b.prefix) - len(a.prefix) })
		c.kinds[kind] = kc
	}
	return c, nil
}

// Attributes returns the catalog's attributes of a resource, nil when the
// catalog does not know it. The map is shared: do not modify it.
func (c Catalog) Attributes(kind, id string) map[string]any {
	kc := c.kinds[kind]
	if kc == nil {
		return nil
	}
	if a, ok := kc.exact[id]; ok {
		return a
	}
	for _, p := range kc.prefixes {
		if strings.HasPrefix(id, p.prefix) {
			return p.attrs
		}
	}
	return nil
}

// Enrich returns the attributes a decision sees for a resource: those the
// enforcement point sent, overridden by the catalog's.
func (c Catalog) Enrich(kind, id string, sent map[string]any) map[string]any {
	known := c.Attributes(kind, id)
	if len(known) == 0 {
		if sent == nil {
			return map[string]any{}
		}
		return sent
	}
	out := make(map[string]any, len(sent)+len(known))
	maps.Copy(out, sent)
	maps.Copy(out, known)
	return out
}
