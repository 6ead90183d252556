package provenance

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func has(vs []Value, kind, norm string) bool { return slices.Contains(vs, Value{kind, norm}) }

// Each kind of value is found in prose, and written two ways normalises to
// one.
func TestFromString(t *testing.T) {
	for _, c := range []struct {
		text       string
		kind, norm string
	}{
		{"Reply to Alice.Smith@Example.COM today", Email, "alice.smith@example.com"},
		{"Reply to Alice.Smith@Example.COM today", Domain, "example.com"},
		{"See https://WWW.Bills.example/pay/2291/?ref=mail.", URL, "bills.example/pay/2291?ref=mail"},
		{"See https://WWW.Bills.example/pay/2291/?ref=mail.", Domain, "bills.example"},
		{"host evil-drop.io is up", Domain, "evil-drop.io"},
		{"IBAN: DE89 3704 0044 0532 0130 00, due Friday", IBAN, "DE89370400440532013000"},
		{"IBAN DE89370400440532013000", IBAN, "DE89370400440532013000"},
		{"call +41 (44) 668-1800 now", Phone, "+41446681800"},
		{"account 0532-0130-0042", Account, "053201300042"},
		{"Total: $1,234.50 incl. VAT", Amount, "1234.5"},
		{"Total: 1234.5", Amount, "1234.5"},
		{"invoice INV-2291 for customer C-100234", ID, "inv-2291"},
		{"invoice INV-2291 for customer C-100234", ID, "c-100234"},
		{"open /home/ada/bills/march.pdf", ID, "/home/ada/bills/march.pdf"},
		{"attach Quarterly-Report.PDF please", ID, "quarterly-report.pdf"},
	} {
		vs := FromString(c.text)
		if !has(vs, c.kind, c.norm) {
			t.Errorf("%q: no %s %q in %v", c.text, c.kind, c.norm, vs)
		}
	}
}

// What is not a value is not found.
func TestFromStringRefuses(t *testing.T) {
	for _, c := range []struct {
		text, kind string
	}{
		{"IBAN DE00 3704 0044 0532 0130 00", IBAN}, // bad check digits
		{"meet at 3 pm", Amount},                   // too small to mean anything
		{"file.txt is not a domain", Domain},
		{"ok", Text},
	} {
		for _, v := range FromString(c.text) {
			if v.Kind == c.kind {
				t.Errorf("%q: found %v", c.text, v)
			}
		}
	}
}

// A sentence copied into an argument, however spaced and cased, is the
// read's.
func TestTextFingerprints(t *testing.T) {
	read := FromString("Hello team. Please wire the deposit to the new account before Friday noon! Thanks.")
	arg := FromString("please WIRE the deposit to the new account   before friday noon")
	common := 0
	for _, v := range arg {
		if v.Kind == Text && has(read, Text, v.Norm) {
			common++
		}
	}
	if common == 0 {
		t.Fatalf("no fingerprint in common: %v / %v", read, arg)
	}
}

func TestFromJSON(t *testing.T) {
	var v any
	d := json.NewDecoder(strings.NewReader(`{"bill": {"iban": "GB82 WEST 1234 5698 7654 32", "amount": 120.00, "to": ["ops@acme.example"]}, "n": 3}`))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		t.Fatal(err)
	}
	vs := FromJSON(v)
	for _, want := range []Value{{IBAN, "GB82WEST12345698765432"}, {Amount, "120"}, {Email, "ops@acme.example"}} {
		if !slices.Contains(vs, want) {
			t.Errorf("no %v in %v", want, vs)
		}
	}
}

// Extraction is bounded and never panics, whatever the input.
func FuzzFromString(f *testing.F) {
	for _, s := range []string{"a@b.co", "https://x.example/p", "DE89 3704 0044 0532 0130 00", "+1 555 0100 9999", "$1,2,3.4", "\xff\xfe", strings.Repeat("a.", 5000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		vs := FromString(s)
		if len(vs) > maxValues {
			t.Fatalf("%d values", len(vs))
		}
		seen := map[Value]bool{}
		for _, v := range vs {
			if v.Norm == "" || seen[v] {
				t.Fatalf("empty or repeated value %v", v)
			}
			seen[v] = true
			if v.Kind != Text && !utf8.ValidString(v.Norm) && utf8.ValidString(s) {
				t.Fatalf("invalid UTF-8 from valid input: %q", v.Norm)
			}
		}
		// Normalising is idempotent for the kinds that are text.
		for _, v := range vs {
			if v.Kind == Email && !has(FromString(v.Norm), Email, v.Norm) {
				t.Fatalf("email %q does not normalise to itself", v.Norm)
			}
		}
	})
}

// Forms the attack on provenance used: a number with an exponent, a
// relative path, an address as a key.
func TestMoreForms(t *testing.T) {
	if vs := FromNumber("9.5e3"); !has(vs, Amount, "9500") {
		t.Errorf("9.5e3: %v", vs)
	}
	if !has(FromString("remove ./budget.xlsx now"), ID, "budget.xlsx") || !has(FromString("remove budget.xlsx"), ID, "budget.xlsx") {
		t.Error("a relative path and the bare name differ")
	}
	if vs := FromString("now EUR 9.500,00."); !has(vs, Amount, "9500") {
		t.Errorf("9.500,00: %v", vs)
	}
	if vs := FromJSON(map[string]any{"drop@evil.example": "vip"}); !has(vs, Email, "drop@evil.example") {
		t.Errorf("an address as a key: %v", vs)
	}
}

// Forms the attack on provenance hid values in.
func TestHiddenForms(t *testing.T) {
	ib := "DE89370400440532013000"
	for _, c := range []struct {
		text, kind, norm string
	}{
		{"send to drop\u200b@evil.example", Email, "drop@evil.example"},
		{"send to ｄｒｏｐ@evil.example", Email, "drop@evil.example"},
		{"IBAN de89 3704 0044 0532 0130 00", IBAN, ib},
		{"IBAN DE89-3704-0044-0532-0130-00", IBAN, ib},
		{"IBAN DE8937040044 0532013000", IBAN, ib},
		{"go to 203.0.113.7 now", Domain, "203.0.113.7"},
		{"the collector at data.collector.ai", Domain, "data.collector.ai"},
	} {
		if vs := FromString(c.text); !has(vs, c.kind, c.norm) {
			t.Errorf("%q: no %s %q in %v", c.text, c.kind, c.norm, vs)
		}
	}
}
