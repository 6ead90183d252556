package audit

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
)

func TestCheckpointSignAndParse(t *testing.T) {
	t.Parallel()
	skey, vkey, err := NewCheckpointKey("warden.example.com/audit")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewCheckpointSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	if s.VerifierKey() != vkey {
		t.Fatalf("derived verifier key %q, generated %q", s.VerifierKey(), vkey)
	}
	root := sha256.Sum256([]byte("x"))
	signed, err := s.Sign(42, root[:])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(signed), "warden.example.com/audit\n42\n") {
		t.Fatalf("note: %q", signed)
	}
	v, err := NewCheckpointVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Parse(signed)
	if err != nil || c.Size != 42 || !bytes.Equal(c.Root, root[:]) {
		t.Fatalf("parse: %+v %v", c, err)
	}

	_, otherV, _ := NewCheckpointKey("warden.example.com/audit")
	ov, _ := NewCheckpointVerifier(otherV)
	forged := bytes.Replace(signed, []byte("\n42\n"), []byte("\n43\n"), 1)
	cases := map[string]struct {
		v   *CheckpointVerifier
		in  []byte
		err string
	}{
		"another key":  {ov, signed, "signature"},
		"size changed": {v, forged, "signature"},
		"no signature": {v, []byte(c.Body()), "signature"},
		"garbage":      {v, []byte("hello"), "signature"},
		"too big":      {v, bytes.Repeat([]byte("a"), 20000), "bytes"},
	}
	for name, tc := range cases {
		if _, err := tc.v.Parse(tc.in); !errors.Is(err, ErrBadCheckpoint) || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestParseCheckpointBody(t *testing.T) {
	t.Parallel()
	root := "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
	good := "log.example/a\n10\n" + root + "\n"
	if c, err := ParseCheckpointBody(good); err != nil || c.Size != 10 || c.Origin != "log.example/a" {
		t.Fatalf("%+v %v", c, err)
	}
	if _, err := ParseCheckpointBody(good + "ext line\n"); err != nil {
		t.Fatalf("extension line: %v", err)
	}
	bad := []string{
		"log.example/a\n10\n" + root, // no final newline
		"log example\n10\n" + root + "\n",
		"log.example/a\n010\n" + root + "\n",
		"log.example/a\n-1\n" + root + "\n",
		"log.example/a\n10\nAAAA\n",
		"log.example/a\n10\n" + root + "\n\n",
		"",
	}
	for _, in := range bad {
		if _, err := ParseCheckpointBody(in); !errors.Is(err, ErrBadCheckpoint) {
			t.Errorf("%q: %v", in, err)
		}
	}
}

func FuzzCheckpoint(f *testing.F) {
	skey, vkey, _ := NewCheckpointKey("warden.test/audit")
	s, _ := NewCheckpointSigner(skey)
	v, _ := NewCheckpointVerifier(vkey)
	signed, _ := s.Sign(5, make([]byte, 32))
	f.Add(signed)
	f.Add([]byte("warden.test/audit\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— warden.test/audit AAAA\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := v.Parse(b)
		if err != nil {
			if !errors.Is(err, ErrBadCheckpoint) {
				t.Fatalf("error not wrapping ErrBadCheckpoint: %v", err)
			}
			return
		}
		// Accepted: then it carries our signature over exactly this body.
		text, ok := SplitNote(b)
		if !ok || text != c.Body() {
			t.Fatalf("accepted a note whose text %q is not the checkpoint body %q", text, c.Body())
		}
		if c.Origin != "warden.test/audit" {
			t.Fatal("accepted another origin")
		}
	})
	_ = ParseCheckpointBody
}
