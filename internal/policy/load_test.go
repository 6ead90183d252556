package policy_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-run/warden/internal/policy"
)

// outsideSecret is a line of a file outside every bundle: what a link
// must never bring into one, or into an error message.
const outsideSecret = "root:x:0:0:outside-secret-7f3a:/root:/bin/bash"

// linkAttack is a bundle directory, possibly with links, next to a
// directory of files that are not part of it.
type linkAttack struct {
	bundle, outside string
}

func newLinkAttack(t *testing.T) linkAttack {
	t.Helper()
	base := t.TempDir()
	a := linkAttack{bundle: filepath.Join(base, "bundle"), outside: filepath.Join(base, "outside")}
	for _, d := range []string{a.bundle, a.outside, filepath.Join(a.outside, "lib")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	a.write(t, a.outside, "passwd", outsideSecret+"\n")
	a.write(t, a.outside, "data.yaml", "secret: "+outsideSecret+"\n")
	a.write(t, a.outside, "lib/lib.rego", "package lib\n\nx := \""+outsideSecret+"\"\n")
	a.write(t, a.bundle, "policy.rego", "package warden.authz\n\nallow := true\n")
	return a
}

func (a linkAttack) write(t *testing.T, dir, name, content string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (a linkAttack) link(t *testing.T, target, name string) {
	t.Helper()
	p := filepath.Join(a.bundle, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

// A bundle directory can come from a pull request: no link may bring a
// file from elsewhere into it (a data.yaml shown by `policy show --files`,
// a .rego whose parse error prints a line of /etc/passwd), and the refusal
// names the link but neither its target nor anything it points to.
func TestLoadDirRefusesLinksOutOfTheBundle(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// setup adds links (and files) to the bundle.
		setup func(t *testing.T, a linkAttack)
		// link is the path the error must name.
		link string
	}{
		{"data document linked to a file elsewhere", func(t *testing.T, a linkAttack) {
			a.link(t, filepath.Join(a.outside, "data.yaml"), "data.yaml")
		}, "data.yaml"},
		{"policy linked by a relative path", func(t *testing.T, a linkAttack) {
			a.link(t, "../outside/passwd", "passwd.rego")
		}, "passwd.rego"},
		{"decision cases linked", func(t *testing.T, a linkAttack) {
			a.link(t, filepath.Join(a.outside, "data.yaml"), "cases/leak.yaml")
		}, "cases/leak.yaml"},
		{"directory of modules linked", func(t *testing.T, a linkAttack) {
			a.link(t, filepath.Join(a.outside, "lib"), "lib")
		}, "lib"},
		{"link inside to a link out", func(t *testing.T, a linkAttack) {
			a.link(t, "../../outside/passwd", "inner/hop.rego")
			a.link(t, "inner/hop.rego", "first.rego")
		}, "first.rego"},
		{"link to the parent directory", func(t *testing.T, a linkAttack) {
			a.link(t, "..", "up")
		}, "up"},
		{"a file that is not part of the bundle, linked out", func(t *testing.T, a linkAttack) {
			a.link(t, filepath.Join(a.outside, "passwd"), "README.md")
		}, "README.md"},
		{"a policy linked to nothing", func(t *testing.T, a linkAttack) {
			a.link(t, "missing.rego", "broken.rego")
		}, "broken.rego"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			a := newLinkAttack(t)
			c.setup(t, a)
			b, err := policy.LoadDir(a.bundle)
			if !errors.Is(err, policy.ErrInvalidBundle) {
				t.Fatalf("loaded %v (err %v), want the link refused", b.Paths(), err)
			}
			msg := err.Error()
			if !strings.Contains(msg, c.link) || !strings.Contains(msg, "symbolic link") {
				t.Errorf("error %q does not name the link %s", msg, c.link)
			}
			if strings.Contains(msg, "outside-secret") || strings.Contains(msg, a.outside) || strings.Contains(msg, "../") {
				t.Errorf("error %q shows where the link points or what is there", msg)
			}
		})
	}
}

// Links that stay inside the bundle are read as their files; hidden links
// and dangling links beside the bundle are left alone.
func TestLoadDirLinksInside(t *testing.T) {
	t.Parallel()
	a := newLinkAttack(t)
	a.write(t, a.bundle, "lib/shared.rego", "package shared\n\nok := true\n")
	a.link(t, "lib/shared.rego", "shared.rego")
	a.link(t, "lib", "lib-again")
	a.link(t, filepath.Join(a.outside, "passwd"), ".hidden")
	a.link(t, "nowhere.md", "NOTES.md")
	b, err := policy.LoadDir(a.bundle)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"lib/shared.rego", "policy.rego", "shared.rego"}
	if got := b.Paths(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("files %v, want %v", got, want)
	}
	if string(b.Files["shared.rego"]) != string(b.Files["lib/shared.rego"]) {
		t.Fatal("a link inside the bundle was not read as its file")
	}
}
