package policy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/warden-run/warden/internal/policy"
)

var (
	opaOnce sync.Once
	opaBin  string
	opaErr  error
)

// opaBinary builds the opa command from the OPA module in go.mod (a tool
// dependency), once per test process.
func opaBinary(t *testing.T) string {
	t.Helper()
	opaOnce.Do(func() {
		dir, err := os.MkdirTemp("", "warden-opa")
		if err != nil {
			opaErr = err
			return
		}
		opaBin = filepath.Join(dir, "opa")
		out, err := exec.Command("go", "build", "-o", opaBin, "github.com/open-policy-agent/opa").CombinedOutput()
		if err != nil {
			opaErr = errors.New(string(out))
		}
	})
	if opaErr != nil {
		t.Fatalf("building opa: %v", opaErr)
	}
	return opaBin
}

// opaStatuses runs `opa test --format json` on dir and returns each test's
// status by package and name.
func opaStatuses(t *testing.T, dir string) map[string]policy.TestStatus {
	t.Helper()
	cmd := exec.Command(opaBinary(t), "test", dir, "--format", "json", "--ignore", "cases")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("opa test: %v %s", err, stderr.String())
	}
	var results []struct {
		Package string `json:"package"`
		Name    string `json:"name"`
		Fail    bool   `json:"fail"`
		Skip    bool   `json:"skip"`
		Error   any    `json:"error"`
	}
	if err := json.Unmarshal(out, &results); err != nil {
		t.Fatalf("opa test output: %v\n%s\n%s", err, out, stderr.String())
	}
	got := map[string]policy.TestStatus{}
	for _, r := range results {
		s := policy.TestPass
		switch {
		case r.Skip:
			s = policy.TestSkip
		case r.Error != nil:
			s = policy.TestError
		case r.Fail:
			s = policy.TestFail
		}
		got[r.Package+"."+r.Name] = s
	}
	return got
}

func parityDirs(t *testing.T) []string {
	dirs, err := filepath.Glob("testdata/opa-parity/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no parity bundles: %v", err)
	}
	shipped, _ := filepath.Glob("../../policies/*")
	for _, d := range shipped {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// warden policy test judges every unit test as opa test does: pass, fail,
// error or skip, on bundles that pass and bundles that fail.
func TestSameVerdictsAsOpaTest(t *testing.T) {
	if testing.Short() {
		t.Skip("builds opa")
	}
	for _, dir := range parityDirs(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			b, err := policy.LoadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := policy.Test(context.Background(), b, policy.TestOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ours := map[string]policy.TestStatus{}
			for _, r := range rep.Tests {
				ours["data."+r.Package+"."+r.Name] = r.Status
				if !strings.HasPrefix(r.Package, "warden") {
					t.Errorf("package %q", r.Package)
				}
			}
			theirs := opaStatuses(t, dir)
			if len(theirs) == 0 {
				t.Fatal("opa ran no tests")
			}
			for name, s := range theirs {
				if ours[name] != s {
					t.Errorf("%s: ours %q, opa test %q", name, ours[name], s)
				}
			}
			if len(ours) != len(theirs) {
				t.Errorf("we ran %d tests, opa test %d", len(ours), len(theirs))
			}
		})
	}
}

func TestReportOnFailingBundle(t *testing.T) {
	t.Parallel()
	b, err := policy.LoadDir("testdata/opa-parity/failing")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := policy.Test(context.Background(), b, policy.TestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Passed {
		t.Fatal("a bundle with failing tests passed")
	}
	byName := map[string]policy.TestResult{}
	for _, r := range rep.Tests {
		byName[r.Name] = r
	}
	if r := byName["test_conflict_errors"]; r.Status != policy.TestError || !strings.Contains(r.Error, "conflict") || r.File != "policy_test.rego" || r.Line == 0 {
		t.Fatalf("the erroring test: %+v", r)
	}
	passing, _ := policy.LoadDir("testdata/opa-parity/passing")
	rep, err = policy.Test(context.Background(), passing, policy.TestOptions{})
	if err != nil || !rep.Passed {
		t.Fatalf("a passing bundle (with a todo test): %v %+v", err, rep)
	}
}

func TestCoverageThreshold(t *testing.T) {
	t.Parallel()
	b, err := policy.LoadDir("testdata/opa-parity/passing")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := policy.Test(context.Background(), b, policy.TestOptions{Coverage: true})
	if err != nil || rep.Coverage == nil || rep.Coverage.Percent <= 0 || rep.Coverage.Percent > 100 {
		t.Fatalf("coverage: %v %+v", err, rep.Coverage)
	}
	pct := rep.Coverage.Percent
	if rep, _ := policy.Test(context.Background(), b, policy.TestOptions{Threshold: pct}); !rep.Passed {
		t.Fatalf("coverage %.1f%% with a threshold of the same fails", pct)
	}
	if rep, _ := policy.Test(context.Background(), b, policy.TestOptions{Threshold: pct + 0.5}); rep.Passed {
		t.Fatalf("coverage %.1f%% under a threshold of %.1f%% passes", pct, pct+0.5)
	}
}

func TestCases(t *testing.T) {
	t.Parallel()
	files := map[string]string{
		"policy.rego": `package warden.authz

default allow := false

allow if input.resource.attributes.sensitivity == "public"

deny contains "pii" if input.resource.attributes.pii

obligations := {"redact": ["ssn"]} if input.action == "read"
`,
		"data.json": `{"resources": {"db.table": {"public/*": {"sensitivity": "public"}, "public/customers": {"sensitivity": "public", "pii": true}}}}`,
		"cases/basic.yaml": `
- name: public table through the catalog
  input: {action: read, resource: {kind: db.table, id: public/prices}}
  outcome: allow
  reasons: []
  obligations: {redact: [ssn]}
- name: pii table
  input: {action: read, resource: {kind: db.table, id: public/customers}}
  outcome: deny
  reasons: [pii]
- name: catalog overrides what was sent
  input: {action: list, resource: {kind: db.table, id: private/x, attributes: {sensitivity: public}}}
  outcome: allow
- name: a wrong expectation
  input: {action: read, resource: {kind: db.table, id: secret/x}}
  outcome: allow
`,
	}
	rep, err := policy.Test(context.Background(), bundle(files), policy.TestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"public table through the catalog": true, "pii table": true,
		"catalog overrides what was sent": true, "a wrong expectation": false}
	if len(rep.Cases) != len(want) {
		t.Fatalf("%d cases, want %d", len(rep.Cases), len(want))
	}
	for _, c := range rep.Cases {
		if c.Pass != want[c.Name] {
			t.Errorf("%s: pass %v (%s), want %v", c.Name, c.Pass, c.Problem, want[c.Name])
		}
	}
	if rep.Passed {
		t.Fatal("a failing case, and the run passed")
	}

	for name, bad := range map[string]string{
		"not a list":      "name: x",
		"unknown key":     "- {name: x, input: {}, outcome: allow, expect: allow}",
		"bad outcome":     "- {name: x, input: {}, outcome: maybe}",
		"no input":        "- {name: x, outcome: allow}",
		"duplicate names": "- {name: x, input: {}, outcome: allow}\n- {name: x, input: {}, outcome: deny}",
	} {
		files["cases/basic.yaml"] = bad
		if _, err := policy.Test(context.Background(), bundle(files), policy.TestOptions{}); !errors.Is(err, policy.ErrInvalidBundle) {
			t.Errorf("%s: %v, want ErrInvalidBundle", name, err)
		}
	}
}
