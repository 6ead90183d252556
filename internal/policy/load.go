package policy

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// LoadDir reads a bundle from a directory: every *.rego file below it, the
// data document and the manifest at its root, and cases/*.yaml. Other files
// (a README, say) are not part of the bundle. Hidden directories and files
// other than .manifest are skipped.
//
// A bundle directory may come from someone else (a pull request that CI
// tests), so nothing outside it is ever read: a symbolic link that leads
// out of the directory, whatever its name, makes the bundle invalid, and
// the error names the link, never where it points. A link to a file inside
// the directory is read as that file; links to directories are not
// followed. The files are read through an os.Root, so a link changed while
// the directory is read cannot lead out either.
//
// Reading stops at MaxLimits; the bundle is checked against them, and
// whoever uses it checks its own limits (Compile, Test).
func LoadDir(dir string) (*Bundle, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	r := &dirReader{dir: dir, root: root, lim: MaxLimits(), b: &Bundle{Files: map[string][]byte{}}}
	if err := fs.WalkDir(root.FS(), ".", r.visit); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err) // unreadable, a link out, or too big (ErrInvalidBundle)
	}
	if err := r.b.CheckLimits(r.lim); err != nil {
		return nil, err
	}
	return r.b, nil
}

// dirReader reads one bundle directory.
type dirReader struct {
	dir   string
	root  *os.Root
	lim   Limits
	b     *Bundle
	total int
}

func (r *dirReader) visit(p string, d fs.DirEntry, err error) error {
	if err != nil {
		return err
	}
	if p == "." {
		return nil
	}
	if strings.HasPrefix(d.Name(), ".") && p != ".manifest" {
		if d.IsDir() {
			return fs.SkipDir
		}
		return nil
	}
	if d.IsDir() {
		return nil
	}
	kind := kindOf(p)
	if d.Type()&fs.ModeSymlink != 0 {
		st, err := r.root.Stat(p)
		if err != nil {
			problem := r.linkProblem(p)
			if problem == linkBroken && kind == fileIgnored {
				return nil // a dangling link beside the bundle, not in it
			}
			return fmt.Errorf("%w: %s is a symbolic link that %s; a bundle may link only to files inside its own directory", ErrInvalidBundle, p, problem)
		}
		if kind == fileIgnored || !st.Mode().IsRegular() {
			return nil // not part of the bundle, or a directory (not followed)
		}
	} else if kind == fileIgnored || !d.Type().IsRegular() {
		return nil
	}
	return r.read(p)
}

// What is wrong with a link the root would not follow. Only for the
// message: where the link points is never said.
const (
	linkOutside = "leads out of the bundle"
	linkBroken  = "leads nowhere"
	linkOther   = "cannot be followed"
)

func (r *dirReader) linkProblem(p string) string {
	target, err := filepath.EvalSymlinks(filepath.Join(r.dir, filepath.FromSlash(p)))
	if errors.Is(err, fs.ErrNotExist) {
		return linkBroken
	}
	base, berr := filepath.EvalSymlinks(r.dir)
	if err != nil || berr != nil {
		return linkOther
	}
	if rel, err := filepath.Rel(base, target); err != nil || !filepath.IsLocal(rel) {
		return linkOutside
	}
	return linkOther
}

func (r *dirReader) read(p string) error {
	f, err := r.root.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return err // replaced by something else meanwhile: skipped
	}
	if len(r.b.Files) >= r.lim.Files {
		return fmt.Errorf("%w: more than %d files", ErrInvalidBundle, r.lim.Files)
	}
	left := r.lim.Bytes - r.total
	data, err := io.ReadAll(io.LimitReader(f, int64(left)+1))
	if err != nil {
		return err
	}
	if len(data) > left {
		return fmt.Errorf("%w: more than %d bytes", ErrInvalidBundle, r.lim.Bytes)
	}
	r.total += len(data)
	r.b.Files[p] = data
	return nil
}
