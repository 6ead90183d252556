package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// refCheckKeys is CheckKeys as it was first written, on encoding/json's
// tokens: the reference the scanner must agree with on every valid JSON.
func refCheckKeys(raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var open []map[string]string
	key := false
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				var names map[string]string
				if v == '{' {
					names = map[string]string{}
				}
				open = append(open, names)
				key = v == '{'
				continue
			default:
				open = open[:len(open)-1]
			}
		case string:
			if key {
				names := open[len(open)-1]
				f := fold(v)
				if prev, ok := names[f]; ok {
					if prev == v {
						return fmt.Errorf("the name %q is given twice in one object", v)
					}
					return fmt.Errorf("the names %q and %q differ only in case: an upstream may read either", prev, v)
				}
				names[f] = v
				key = false
				continue
			}
		}
		key = len(open) > 0 && open[len(open)-1] != nil
	}
}

// FuzzCheckKeys: on valid JSON, the scanner refuses exactly what the
// reference refuses, saying the same.
func FuzzCheckKeys(f *testing.F) {
	for _, s := range []string{`{"a":1,"A":2}`, `{"a":{"b":[1,{"c":2,"c":3}]}}`, "{\"k\":1,\"\u212a\":2}", `{"\u0061":1,"a":2}`,
		"{\"\xff\":1,\"\xfe\":2}", `{"x":"\"","y":"\\"}`, `[1,"a",true,null,-1.5e3,{}]`, `{"s":1,"ſ":2}`, `{"é":1,"É":2}`,
		`{"` + strings.Repeat(`a":1,"`, 20) + `b":1,"A":3}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			CheckKeys(raw) // must not panic
			return
		}
		got, want := CheckKeys(raw), refCheckKeys(raw)
		if (got == nil) != (want == nil) || got != nil && got.Error() != want.Error() {
			t.Fatalf("%q: the scanner says %v, the reference %v", raw, got, want)
		}
	})
}

// TestCheckKeysManyNames: past its first sixteen names an object's names
// are kept by their folding; a name repeated among the later ones, or
// among the first, is still found.
func TestCheckKeysManyNames(t *testing.T) {
	for _, repeat := range []string{"K7", "K1500"} {
		var b strings.Builder
		b.WriteString("{")
		for i := range 2000 {
			fmt.Fprintf(&b, `"k%d":1,`, i)
		}
		b.WriteString(`"` + repeat + `":2}`)
		if err := CheckKeys([]byte(b.String())); err == nil || !strings.Contains(err.Error(), strings.ToLower(repeat)+`" and "`+repeat) {
			t.Errorf("%s: got %v", repeat, err)
		}
	}
}

// BenchmarkCheckKeys is the check on a tool call's arguments, by the
// token-based reference and by the scanner.
func BenchmarkCheckKeys(b *testing.B) {
	raw := []byte(`{"to":"alice@example.com","subject":"Quarterly report","body":"Please find the figures attached.",` +
		`"cc":["bob@example.com","carol@example.com"],"options":{"priority":"high","receipt":true,"retries":3}}`)
	for _, c := range []struct {
		name  string
		check func([]byte) error
	}{{"tokens", refCheckKeys}, {"scanner", CheckKeys}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if c.check(raw) != nil {
					b.Fatal("refused")
				}
			}
		})
	}
}
