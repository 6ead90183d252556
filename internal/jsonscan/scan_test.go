package jsonscan

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// A text skipped to its end is what encoding/json calls valid.
func FuzzSkipIsValid(f *testing.F) {
	for _, s := range []string{
		`{"a":[1,-0.5e+3,true,false,null,"x\u00e9\n"],"b":{}}`, `[]`, `null`, `"\ud800"`, "\"\xff\"", `01`, `1.`, `-`, `{"a":1,}`,
		`[1 2]`, `{"a" 1}`, "\"\x01\"", `tru`, `{"a":1}x`, ` 7 `, `"\q"`, `1e`, `[` + strings.Repeat(`[`, 10001),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := New(b)
		err := s.Skip()
		got := err == nil && s.End()
		if err != nil && !errors.Is(err, ErrGiveUp) {
			t.Fatalf("an error other than ErrGiveUp: %v", err)
		}
		if want := json.Valid(b); got != want {
			t.Fatalf("%q: skipped to its end %v, valid %v", b, got, want)
		}
	})
}

// Strings read as encoding/json reads them.
func TestStr(t *testing.T) {
	for _, in := range []string{`"plain"`, `"é ü \u2028"`, `"\u00e9\"\\\/\b\f\n\r\t"`, "\"\xff\xfe\"", `"\ud800x"`, "\"\xed\xa0\x80\""} {
		var want string
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatal(err)
		}
		got, err := New([]byte(in)).Str()
		if err != nil || got != want {
			t.Errorf("%s: read %q (%v), want %q", in, got, err, want)
		}
	}
	if got, err := New([]byte(`null`)).Str(); err != nil || got != "" {
		t.Errorf("null: %q %v", got, err)
	}
	for _, in := range []string{`1`, `"a`, "\"a\x1f\"", `"\x"`, `["a"]`} {
		if _, err := New([]byte(in)).Str(); err == nil {
			t.Errorf("%s read as a string", in)
		}
	}
}

// Fields reads the members named, and gives up where encoding/json would
// read a struct otherwise: a name in another case, or twice.
func TestFields(t *testing.T) {
	read := func(in string) (string, string, error) {
		var a, b string
		s := New([]byte(in))
		err := s.Fields([]string{"a", "b"}, func(i int) (err error) {
			if i == 0 {
				a, err = s.Str()
			} else {
				b, err = s.Str()
			}
			return err
		})
		if err == nil && !s.End() {
			err = ErrGiveUp
		}
		return a, b, err
	}
	if a, b, err := read(`{"x":[1,{"a":2}],"b":"2","a":"1"}`); err != nil || a != "1" || b != "2" {
		t.Errorf("read %q %q %v", a, b, err)
	}
	for _, in := range []string{`{"a":"1","a":"2"}`, `{"A":"1"}`, `{"a":1}`, `{"a":"1"`, `{"a":"1"} {}`} {
		if a, b, err := read(in); err == nil {
			t.Errorf("%s: read %q %q", in, a, b)
		}
	}
}

// Members reads the members named exactly, and gives up on one named twice.
func TestMembers(t *testing.T) {
	read := func(in string) (string, error) {
		var a string
		s := New([]byte(in))
		err := s.Members([]string{"a"}, func(int) (err error) {
			a, err = s.Str()
			return err
		})
		return a, err
	}
	if a, err := read(`{"A":1,"a":"1","b":{"a":2}}`); err != nil || a != "1" {
		t.Errorf("read %q %v", a, err)
	}
	if a, err := read(`{"a":"1","a":"2"}`); err == nil {
		t.Errorf("a member twice: read %q", a)
	}
}
