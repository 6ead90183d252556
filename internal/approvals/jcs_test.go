package approvals

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"testing"
)

// The number examples of RFC 8785, appendix B, and the sample lines of its
// published test file.
func TestCanonicalNumbers(t *testing.T) {
	for _, c := range []struct {
		bits uint64
		want string
	}{
		{0x0000000000000000, "0"},
		{0x8000000000000000, "0"},
		{0x0000000000000001, "5e-324"},
		{0x8000000000000001, "-5e-324"},
		{0x7fefffffffffffff, "1.7976931348623157e+308"},
		{0xffefffffffffffff, "-1.7976931348623157e+308"},
		{0x4340000000000000, "9007199254740992"},
		{0xc340000000000000, "-9007199254740992"},
		{0x4430000000000000, "295147905179352830000"},
		{0x444b1ae4d6e2ef50, "1e+21"},
		{0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
		{0x3eb0c6f7a0b5ed8d, "0.000001"},
		{0x4340000000000001, "9007199254740994"},
		{0x4340000000000002, "9007199254740996"},
	} {
		got, err := appendDouble(nil, math.Float64frombits(c.bits))
		if err != nil || string(got) != c.want {
			t.Errorf("%016x: %s (%v), want %s", c.bits, got, err, c.want)
		}
	}
}

// The RFC's values example: numbers, a string with escapes, literals.
func TestCanonicalValues(t *testing.T) {
	in := `{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]}`
	want := `{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`
	var v any
	if err := json.Unmarshal([]byte(in), &v); err != nil { // float64s: the RFC's numbers are doubles
		t.Fatal(err)
	}
	got, err := Canonical(nil, v)
	if err != nil || string(got) != want {
		t.Fatalf("got %s (%v)\nwant %s", got, err, want)
	}
}

// Member names sort by UTF-16 code units, not by bytes or runes: the
// RFC's sorting example.
func TestCanonicalSortsByUTF16(t *testing.T) {
	in := `{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis"}`
	var v any
	dec := json.NewDecoder(bytes.NewReader([]byte(in)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	got, err := Canonical(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	d := json.NewDecoder(bytes.NewReader(got))
	d.Token()
	for d.More() {
		k, _ := d.Token()
		val, _ := d.Token()
		_ = k
		order = append(order, val.(string))
	}
	want := []string{"Carriage Return", "One", "Control", "Latin Small Letter O With Diaeresis", "Euro Sign", "Emoji: Grinning Face", "Hebrew Letter Dalet With Dagesh"}
	for i := range want {
		if i >= len(order) || order[i] != want[i] {
			t.Fatalf("order %v, want %v", order, want)
		}
	}
}

// A number written more exactly than a double holds is refused: its
// canonical form would stand for other values too.
func TestCanonicalRefusesInexactNumbers(t *testing.T) {
	for _, s := range []string{"9007199254740993", "0.10000000000000000001", "1e400", "123456789012345678901234567890"} {
		if _, err := Canonical(nil, json.Number(s)); !errors.Is(err, ErrInexactNumber) {
			t.Errorf("%s: %v, want ErrInexactNumber", s, err)
		}
	}
	for s, want := range map[string]string{"0.1": "0.1", "1.0": "1", "1e2": "100", "-0": "0", "2.50": "2.5", "9007199254740992": "9007199254740992"} {
		if got, err := Canonical(nil, json.Number(s)); err != nil || string(got) != want {
			t.Errorf("%s: %s (%v), want %s", s, got, err, want)
		}
	}
}
