package wire_test

import (
	"strings"
	"testing"

	"github.com/warden-run/warden/internal/wire"
)

func TestCheckKeys(t *testing.T) {
	for _, c := range []struct {
		json, refused string // refused: what the error says; empty when accepted
	}{
		{`{"a":{"a":1,"b":[{"x":1},{"x":2}]},"b":"a","c":["a","a"]}`, ""},
		{`[{"to":1},{"to":2}]`, ""},
		{`{"to":"x","to":"y"}`, `"to" is given twice`},
		{`{"to":"x","To":"y"}`, `"to" and "To" differ only in case`},
		{`{"m":[1,{"k":{"id":1,"ID":2}}]}`, `"id" and "ID"`},
		{`{"a":{"x":1},"A":{"x":1}}`, `"a" and "A"`},
		{"{\"k\":1,\"\u212a\":2}", "differ only in case"},       // the Kelvin sign folds to k
		{"{\"file\":1,\"f\u0131le\":2}", "differ only in case"}, // the dotless ı raises to I
		{"{\"id\":1,\"\u0130d\":2}", "differ only in case"},     // the dotted İ lowers to i
		{"{\"\u00df\":1,\"ss\":2}", ""},                         // ß is not ss in simple folding
		{`{"a":1} {"a":2}`, ""},                                 // two values: each is its own
		{strings.Repeat("[", 10001) + strings.Repeat("]", 10001), "nested too deeply"},
		{`{"a":`, ""}, // broken: decoding refuses it
	} {
		err := wire.CheckKeys([]byte(c.json))
		switch {
		case c.refused == "" && err != nil:
			t.Errorf("%.40s: refused: %v", c.json, err)
		case c.refused != "" && (err == nil || !strings.Contains(err.Error(), c.refused)):
			t.Errorf("%.40s: %v, want it refused saying %q", c.json, err, c.refused)
		}
	}
}
