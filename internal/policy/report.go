package policy

import (
	"cmp"
	"encoding/xml"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/cover"
)

// Counts sums up a report.
type Counts struct {
	Pass      int `json:"tests_passed"`
	Fail      int `json:"tests_failed"`
	Error     int `json:"tests_errored"`
	Skip      int `json:"tests_skipped"`
	CasesPass int `json:"cases_passed"`
	CasesFail int `json:"cases_failed"`
}

// Counts counts the report's tests and cases by result.
func (r *TestReport) Counts() Counts {
	var c Counts
	for _, t := range r.Tests {
		switch t.Status {
		case TestPass:
			c.Pass++
		case TestFail:
			c.Fail++
		case TestError:
			c.Error++
		case TestSkip:
			c.Skip++
		}
	}
	for _, x := range r.Cases {
		if x.Pass {
			c.CasesPass++
		} else {
			c.CasesFail++
		}
	}
	return c
}

// WriteText writes a readable report: every test and case that did not
// pass, with why (verbose: every one), the coverage when measured, and a
// summary line.
func (r *TestReport) WriteText(w io.Writer, verbose bool) error {
	tests := slices.Clone(r.Tests)
	slices.SortStableFunc(tests, func(a, b TestResult) int {
		return cmp.Or(strings.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
	})
	var b strings.Builder
	if len(tests) > 0 && (verbose || !r.allTestsPass()) {
		b.WriteString("Rego unit tests\n")
	}
	for _, t := range tests {
		if t.Status == TestPass && !verbose {
			continue
		}
		fmt.Fprintf(&b, "  %-5s %s.%s  (%s:%d)\n", strings.ToUpper(string(t.Status)), t.Package, t.Name, t.File, t.Line)
		if t.Error != "" {
			fmt.Fprintf(&b, "        %s\n", indent(t.Error))
		}
		if t.Output != "" && (verbose || t.Status != TestPass) {
			fmt.Fprintf(&b, "        print: %s\n", indent(strings.TrimRight(t.Output, "\n")))
		}
	}
	if len(r.Cases) > 0 && (verbose || !r.allCasesPass()) {
		b.WriteString("Decision cases\n")
	}
	for _, c := range r.Cases {
		if c.Pass && !verbose {
			continue
		}
		status := "PASS"
		if !c.Pass {
			status = "FAIL"
		}
		fmt.Fprintf(&b, "  %-5s %s: %s\n", status, c.File, c.Name)
		if c.Problem != "" {
			fmt.Fprintf(&b, "        %s\n", indent(c.Problem))
		}
	}
	if cv := r.Coverage; cv != nil {
		fmt.Fprintf(&b, "Coverage: %.1f%%", cv.Percent)
		if cv.Threshold > 0 {
			verdict := "met"
			if cv.Percent < cv.Threshold {
				verdict = "NOT met"
			}
			fmt.Fprintf(&b, " (threshold %.1f%%: %s)", cv.Threshold, verdict)
		}
		b.WriteString("\n")
		for _, f := range sortedKeys(cv.Files) {
			fr := cv.Files[f]
			if verbose || fr.NotCoveredLines > 0 {
				fmt.Fprintf(&b, "  %-40s %5.1f%%%s\n", f, fr.Coverage, uncovered(fr.NotCovered))
			}
		}
	}
	c := r.Counts()
	verdict := "PASS"
	if !r.Passed {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "%s  %s: %d tests passed, %d failed, %d errors, %d skipped; %d of %d cases passed\n",
		verdict, r.Version, c.Pass, c.Fail, c.Error, c.Skip, c.CasesPass, c.CasesPass+c.CasesFail)
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *TestReport) allTestsPass() bool {
	return !slices.ContainsFunc(r.Tests, func(t TestResult) bool { return t.Status != TestPass })
}

func (r *TestReport) allCasesPass() bool {
	return !slices.ContainsFunc(r.Cases, func(c CaseResult) bool { return !c.Pass })
}

func uncovered(rs []cover.Range) string {
	if len(rs) == 0 {
		return ""
	}
	parts := make([]string, 0, len(rs))
	for _, r := range rs {
		part := fmt.Sprint(r.Start.Row)
		if r.Start.Row != r.End.Row {
			part = fmt.Sprintf("%d-%d", r.Start.Row, r.End.Row)
		}
		if !slices.Contains(parts, part) {
			parts = append(parts, part)
		}
	}
	return "  not covered: lines " + strings.Join(parts, ", ")
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n        ") }

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// JUnit XML, as CI systems read it.
type (
	junitSuites struct {
		XMLName xml.Name     `xml:"testsuites"`
		Suites  []junitSuite `xml:"testsuite"`
	}
	junitSuite struct {
		Name     string      `xml:"name,attr"`
		Tests    int         `xml:"tests,attr"`
		Failures int         `xml:"failures,attr"`
		Errors   int         `xml:"errors,attr"`
		Skipped  int         `xml:"skipped,attr"`
		Cases    []junitCase `xml:"testcase"`
	}
	junitCase struct {
		Class   string        `xml:"classname,attr"`
		Name    string        `xml:"name,attr"`
		Time    string        `xml:"time,attr,omitempty"`
		Failure *junitProblem `xml:"failure,omitempty"`
		Error   *junitProblem `xml:"error,omitempty"`
		Skipped *struct{}     `xml:"skipped,omitempty"`
	}
	junitProblem struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	}
)

// WriteJUnit writes the report as JUnit XML: one suite for the unit tests,
// one for the decision cases.
func (r *TestReport) WriteJUnit(w io.Writer) error {
	units := junitSuite{Name: "rego unit tests"}
	for _, t := range r.Tests {
		jc := junitCase{Class: t.Package, Name: t.Name, Time: fmt.Sprintf("%.6f", t.Duration.Seconds())}
		units.Tests++
		switch t.Status {
		case TestFail:
			units.Failures++
			jc.Failure = &junitProblem{Message: "test failed", Text: fmt.Sprintf("%s:%d %s", t.File, t.Line, t.Output)}
		case TestError:
			units.Errors++
			jc.Error = &junitProblem{Message: t.Error, Text: fmt.Sprintf("%s:%d", t.File, t.Line)}
		case TestSkip:
			units.Skipped++
			jc.Skipped = &struct{}{}
		}
		units.Cases = append(units.Cases, jc)
	}
	cases := junitSuite{Name: "decision cases"}
	for _, c := range r.Cases {
		jc := junitCase{Class: c.File, Name: c.Name}
		cases.Tests++
		if !c.Pass {
			cases.Failures++
			jc.Failure = &junitProblem{Message: c.Problem}
		}
		cases.Cases = append(cases.Cases, jc)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(junitSuites{Suites: []junitSuite{units, cases}}); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
