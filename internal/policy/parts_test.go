package policy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// TestPartsConvertAsTheWhole: an input with parts given converts to the
// same value as the input converted whole, wherever the parts are, and a
// part's value is taken as given (here, one unlike the map beside it).
func TestPartsConvertAsTheWhole(t *testing.T) {
	var input map[string]any
	dec := json.NewDecoder(strings.NewReader(`{"action":"tools/call","agent":{"id":"a","roles":["r"],"attributes":{}},
		"args":{"q":1.5,"n":null,"l":[1,{"x":true}]},"context":{"time":"t","provenance":{"known":false,"args":{}},"risk":{"score":0}},
		"resource":{"kind":"k","id":"i","attributes":{"egress":true}}}`))
	dec.UseNumber()
	if err := dec.Decode(&input); err != nil {
		t.Fatal(err)
	}
	whole := ast.MustInterfaceToValue(input)
	at := func(path ...string) ast.Value {
		var v any = input
		for _, k := range path {
			v = v.(map[string]any)[k]
		}
		return ast.MustInterfaceToValue(v)
	}
	for _, parts := range [][]Part{
		{{"agent", at("agent")}},
		{{"context.provenance", at("context", "provenance")}},
		{{"agent", at("agent")}, {"context.provenance", at("context", "provenance")}, {"context.risk", at("context", "risk")}},
		{{"context", at("context")}, {"resource.attributes", at("resource", "attributes")}},
		{{"args.l", at("args", "l")}, {"ag", ast.String("not a place in the input")}, {"agent.id.x", ast.String("below a string")}},
	} {
		got, err := toValue(input, parts)
		if err != nil {
			t.Fatal(err)
		}
		if got.Compare(whole) != 0 {
			t.Errorf("with parts %v:\n got %v\nwant %v", parts, got, whole)
		}
	}
	got, err := toValue(input, []Part{{"context.risk", ast.String("given")}})
	if err != nil {
		t.Fatal(err)
	}
	risk, _ := got.(ast.Object).Find(ast.MustParseRef("x.context.risk")[1:])
	if risk == nil || risk.Compare(ast.String("given")) != 0 {
		t.Errorf("the part given was not taken: context.risk is %v", risk)
	}
}
