package policy

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestOptions configures a test run.
type TestOptions struct {
	// Coverage measures which lines of the modules the unit tests evaluate.
	Coverage bool
	// Threshold, a percentage, fails the run when coverage is below it.
	// Setting it turns Coverage on.
	Threshold float64
	// Run keeps only the unit tests whose names match this regular
	// expression (opa test --run).
	Run string
	// Timeout bounds each unit test. Default 5s, as opa test.
	Timeout time.Duration
	// Engine configures the engine the decision cases run on.
	Engine EngineConfig
}

// TestReport is the outcome of a test run.
type TestReport struct {
	Version string       `json:"version"`
	Tests   []TestResult `json:"tests"`
	Cases   []CaseResult `json:"cases"`
	// Coverage is set when it was measured.
	Coverage *CoverageReport `json:"coverage,omitempty"`
	Passed   bool            `json:"passed"`
}

// TestResult is one Rego unit test: a test_ rule (todo_test_ ones are
// skipped), judged as opa test judges it.
type TestResult struct {
	Package  string        `json:"package"`
	Name     string        `json:"name"`
	File     string        `json:"file"`
	Line     int           `json:"line"`
	Status   TestStatus    `json:"status"`
	Error    string        `json:"error,omitempty"`
	Output   string        `json:"output,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

// TestStatus is how a unit test ended.
type TestStatus string

// Unit test statuses.
const (
	TestPass  TestStatus = "pass"
	TestFail  TestStatus = "fail"  // the rule was false or undefined
	TestError TestStatus = "error" // evaluation failed
	TestSkip  TestStatus = "skip"  // todo_test_
)

// CoverageReport is OPA's coverage of the modules by the unit tests.
type CoverageReport struct {
	Percent   float64                      `json:"percent"`
	Threshold float64                      `json:"threshold,omitempty"`
	Files     map[string]*cover.FileReport `json:"files"`
}

// Test runs a bundle's Rego unit tests with OPA's test runner, with the
// same semantics as opa test, then its decision cases (cases/*.yaml) on the
// engine that would serve it. A bundle that does not compile is an error;
// failing tests and cases are in the report, which has Passed false.
// A skipped (todo_test_) test does not fail the run.
func Test(ctx context.Context, b *Bundle, opts TestOptions) (rep *TestReport, err error) {
	defer func() {
		if p := recover(); p != nil { // see Compile
			rep, err = nil, fmt.Errorf("%w: the policy engine failed on this bundle", ErrInvalidBundle)
		}
	}()
	if err := b.CheckLimits(opts.Engine.Limits); err != nil {
		return nil, err
	}
	engine, err := Compile(ctx, b, opts.Engine)
	if err != nil {
		return nil, err
	}
	rep = &TestReport{Version: engine.Version(), Tests: []TestResult{}, Cases: []CaseResult{}}
	if err := runUnitTests(ctx, b, opts, rep); err != nil {
		return nil, err
	}
	cases, err := LoadCases(b)
	if err != nil {
		return nil, err
	}
	for _, c := range cases {
		rep.Cases = append(rep.Cases, c.Run(ctx, engine))
	}
	rep.Passed = true
	for _, t := range rep.Tests {
		if t.Status == TestFail || t.Status == TestError {
			rep.Passed = false
		}
	}
	for _, c := range rep.Cases {
		if !c.Pass {
			rep.Passed = false
		}
	}
	if c := rep.Coverage; c != nil && c.Threshold > 0 && c.Percent < c.Threshold {
		rep.Passed = false
	}
	return rep, nil
}

func runUnitTests(ctx context.Context, b *Bundle, opts TestOptions, rep *TestReport) error {
	modules, err := parseModules(b, true)
	if err != nil {
		return err
	}
	data, err := b.Data()
	if err != nil {
		return err
	}
	store := inmem.NewFromObject(data)
	txn, err := store.NewTransaction(ctx, storage.WriteParams)
	if err != nil {
		return err
	}
	defer store.Abort(ctx, txn)
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	compiler := ast.NewCompiler().
		WithPathConflictsCheck(storage.NonEmpty(ctx, store, txn)).
		WithEnablePrintStatements(true).
		WithCapabilities(capabilities()).
		WithUseTypeCheckAnnotations(true)
	var cov *cover.Cover
	runner := tester.NewRunner().
		SetCompiler(compiler).
		SetStore(store).
		SetModules(modules).
		CapturePrintOutput(true).
		SetTimeout(opts.Timeout).
		Filter(opts.Run)
	if opts.Coverage || opts.Threshold > 0 {
		cov = cover.New()
		runner = runner.SetCoverageQueryTracer(cov)
	}
	ch, err := runner.RunTests(ctx, txn)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidBundle, err)
	}
	for r := range ch {
		rep.Tests = append(rep.Tests, unitResult(r))
	}
	if cov != nil {
		cr := cov.Report(modules)
		rep.Coverage = &CoverageReport{Percent: cr.Coverage, Threshold: opts.Threshold, Files: cr.Files}
	}
	return nil
}

func unitResult(r *tester.Result) TestResult {
	t := TestResult{Package: strings.TrimPrefix(r.Package, "data."), Name: r.Name, Duration: r.Duration, Output: string(r.Output)}
	if r.Location != nil {
		t.File, t.Line = r.Location.File, r.Location.Row
	}
	switch {
	case r.Skip:
		t.Status = TestSkip
	case r.Error != nil:
		t.Status = TestError
		t.Error = r.Error.Error()
	case r.Fail:
		t.Status = TestFail
	default:
		t.Status = TestPass
	}
	return t
}
