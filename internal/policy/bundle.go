// Package policy is Warden's policy decision engine and the policy-as-code
// lifecycle around it: bundles and their versions, the embedded OPA engine,
// the test runner (Rego unit tests and decision cases) and replay.
package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Limits bound a bundle, so that a push cannot exhaust the server and one
// builtin call over the data document stays short. A zero field means its
// default.
type Limits struct {
	// Files is the most files a bundle may hold. Default 1,000.
	Files int
	// Bytes is the most bytes its files may hold in all. Default 16 MiB.
	Bytes int
	// DataBytes is the most bytes of its data document (data.json or
	// data.yaml). Default 1 MiB.
	DataBytes int
}

// DefaultLimits are a bundle's limits unless configured otherwise.
func DefaultLimits() Limits { return Limits{Files: 1000, Bytes: 16 << 20, DataBytes: 1 << 20} }

// MaxLimits are the largest limits a configuration may set. A bundle read
// from a directory, and a stored version loaded again, is held to them.
func MaxLimits() Limits { return Limits{Files: 10_000, Bytes: 64 << 20, DataBytes: 64 << 20} }

func (l Limits) orDefault() Limits {
	d := DefaultLimits()
	if l.Files <= 0 {
		l.Files = d.Files
	}
	if l.Bytes <= 0 {
		l.Bytes = d.Bytes
	}
	if l.DataBytes <= 0 {
		l.DataBytes = d.DataBytes
	}
	return l
}

// LimitError is a bundle over one of its limits. It is an ErrInvalidBundle.
type LimitError struct {
	// Key is the configuration key of the limit, such as
	// policy.limits.data_bytes.
	Key string
	// File is the file over its limit, if the limit is on one file.
	File string
	// Size is the bundle's (or the file's) bytes or files; Max the limit.
	Size, Max int
}

func (e *LimitError) Error() string {
	what := "bytes"
	if e.Key == "policy.limits.bundle_files" {
		what = "files"
	}
	file := ""
	if e.File != "" {
		file = e.File + ": "
	}
	return fmt.Sprintf("%v: %s%d %s, at most %d (%s)", ErrInvalidBundle, file, e.Size, what, e.Max, e.Key)
}

func (e *LimitError) Unwrap() error { return ErrInvalidBundle }

// ErrInvalidBundle means a bundle's files are not a valid bundle: a bad
// path, an unknown kind of file, a syntax error, data that is not JSON.
var ErrInvalidBundle = errors.New("invalid policy bundle")

// Bundle is a policy bundle: Rego modules (policies and *_test.rego unit
// tests), the data document (data.json or data.yaml), decision cases
// (cases/*.yaml) and an optional .manifest, by slash-separated path
// relative to the bundle's root.
type Bundle struct {
	Files map[string][]byte
}

// A file's role in a bundle.
type fileKind int

const (
	fileIgnored fileKind = iota
	fileModule
	fileTest
	fileData
	fileCases
	fileManifest
)

func kindOf(p string) fileKind {
	base := path.Base(p)
	switch {
	case strings.HasSuffix(base, "_test.rego"):
		return fileTest
	case strings.HasSuffix(base, ".rego"):
		return fileModule
	case p == "data.json" || p == "data.yaml" || p == "data.yml":
		return fileData
	case path.Dir(p) == "cases" && (strings.HasSuffix(base, ".yaml") || strings.HasSuffix(base, ".yml")):
		return fileCases
	case p == ".manifest":
		return fileManifest
	}
	return fileIgnored
}

// Check validates the bundle's shape within DefaultLimits.
func (b *Bundle) Check() error { return b.CheckLimits(Limits{}) }

// CheckLimits validates the bundle's shape: paths, file kinds, sizes
// within lim, one data document, at least one policy module. It does not
// compile the policy.
func (b *Bundle) CheckLimits(lim Limits) error {
	lim = lim.orDefault()
	if len(b.Files) > lim.Files {
		return &LimitError{Key: "policy.limits.bundle_files", Size: len(b.Files), Max: lim.Files}
	}
	total, modules, data := 0, 0, 0
	for p, content := range b.Files {
		if err := checkPath(p); err != nil {
			return err
		}
		total += len(content)
		switch kindOf(p) {
		case fileIgnored:
			return fmt.Errorf("%w: %s: not a bundle file (*.rego, data.json, data.yaml, cases/*.yaml, .manifest)", ErrInvalidBundle, p)
		case fileModule:
			modules++
		case fileData:
			data++
			if len(content) > lim.DataBytes {
				return &LimitError{Key: "policy.limits.data_bytes", File: p, Size: len(content), Max: lim.DataBytes}
			}
		case fileManifest:
			if !json.Valid(content) {
				return fmt.Errorf("%w: .manifest is not JSON", ErrInvalidBundle)
			}
		}
		if !utf8.Valid(content) {
			return fmt.Errorf("%w: %s is not UTF-8 text", ErrInvalidBundle, p)
		}
	}
	switch {
	case total > lim.Bytes:
		return &LimitError{Key: "policy.limits.bundle_bytes", Size: total, Max: lim.Bytes}
	case data > 1:
		return fmt.Errorf("%w: more than one data document (data.json, data.yaml)", ErrInvalidBundle)
	case modules == 0:
		return fmt.Errorf("%w: no policy module (a .rego file that is not a _test.rego)", ErrInvalidBundle)
	}
	return nil
}

func checkPath(p string) error {
	switch {
	case p == "" || len(p) > 255:
		return fmt.Errorf("%w: file path %q: empty or longer than 255 bytes", ErrInvalidBundle, p)
	case !utf8.ValidString(p) || strings.ContainsAny(p, "\\\x00"):
		return fmt.Errorf("%w: file path %q: not a clean slash-separated path", ErrInvalidBundle, p)
	case path.IsAbs(p) || path.Clean(p) != p || p == "." || strings.HasPrefix(p, "../"):
		return fmt.Errorf("%w: file path %q: not a clean relative path", ErrInvalidBundle, p)
	}
	return nil
}

// Paths returns the bundle's file paths in order.
func (b *Bundle) Paths() []string {
	ps := make([]string, 0, len(b.Files))
	for p := range b.Files {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// Digest identifies the bundle's content: "sha256:" and the hex SHA-256 of
// every file, in path order, each as its path, a zero byte, its length in
// 8 bytes (big-endian) and its bytes. The same files give the same digest,
// whatever the directory or the order they were read in.
func (b *Bundle) Digest() string {
	h := sha256.New()
	var n [8]byte
	for _, p := range b.Paths() {
		h.Write([]byte(p))
		h.Write([]byte{0})
		binary.BigEndian.PutUint64(n[:], uint64(len(b.Files[p])))
		h.Write(n[:])
		h.Write(b.Files[p])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// Data parses the data document, an empty object when there is none.
func (b *Bundle) Data() (map[string]any, error) {
	for _, name := range []string{"data.json", "data.yaml", "data.yml"} {
		raw, ok := b.Files[name]
		if !ok {
			continue
		}
		var doc any
		if name == "data.json" {
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.UseNumber()
			if err := dec.Decode(&doc); err != nil {
				return nil, fmt.Errorf("%w: data.json: %v", ErrInvalidBundle, err)
			}
		} else {
			var err error
			if doc, err = decodeYAML(raw); err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrInvalidBundle, name, err)
			}
		}
		obj, ok := doc.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: %s: the data document must be an object", ErrInvalidBundle, name)
		}
		// OPA's store panics on a value it cannot hold (a number such as
		// 1e400000): refuse it here, with OPA's own conversion.
		if _, err := ast.InterfaceToValue(obj); err != nil {
			return nil, fmt.Errorf("%w: %s: a value OPA cannot hold (a number out of range?)", ErrInvalidBundle, name)
		}
		return obj, nil
	}
	return map[string]any{}, nil
}
