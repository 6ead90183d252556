package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// A pushed bundle's tests are code from whoever pushed it, run on the
// server. OPA's cancellation cannot stop one builtin call, and nothing in
// a Go process can bound the memory of one goroutine, so the server runs
// them in a worker process of its own binary: the worker limits its own
// memory (RLIMIT_DATA, on Linux) before it reads the bundle, and is killed
// when the run's time is up. See TestRunConfig.

// Errors of a test run.
var (
	// ErrBusy means that as many test runs as allowed are going on; try
	// again shortly. Nothing was tested.
	ErrBusy = errors.New("policy test runs are busy")
	// ErrTestsStopped means that a bundle's test run was stopped before it
	// ended, over its time or memory, or its worker failed. The bundle is
	// refused.
	ErrTestsStopped = errors.New("policy tests stopped")
)

// TestsStoppedError says why a test run was stopped.
type TestsStoppedError struct {
	// Reason is "time", "memory" or "worker" (the worker process failed
	// some other way).
	Reason string
	// Limit is the limit that stopped it ("60s", "512 MiB"), or the
	// worker's exit status.
	Limit string
}

func (e *TestsStoppedError) Error() string {
	switch e.Reason {
	case "time":
		return fmt.Sprintf("%v: they ran longer than %s (policy.tests.timeout)", ErrTestsStopped, e.Limit)
	case "memory":
		return fmt.Sprintf("%v: they used more than %s of memory (policy.tests.memory_bytes)", ErrTestsStopped, e.Limit)
	}
	return fmt.Sprintf("%v: the test worker failed (%s)", ErrTestsStopped, e.Limit)
}

func (e *TestsStoppedError) Unwrap() error { return ErrTestsStopped }

// BundleError is an invalid bundle's error with where OPA found the
// problems ("policy.rego:3: rego_parse_error"): what can be recorded of a
// refused push without the bundle's content, which OPA's messages quote.
type BundleError struct {
	Message string
	Where   []string
}

func (e *BundleError) Error() string { return e.Message }

func (e *BundleError) Unwrap() error { return ErrInvalidBundle }

// bundleError turns an ErrInvalidBundle into a *BundleError.
func bundleError(err error) error {
	var be *BundleError
	if !errors.Is(err, ErrInvalidBundle) || errors.As(err, &be) {
		return err
	}
	var limit *LimitError
	if errors.As(err, &limit) {
		return err
	}
	be = &BundleError{Message: err.Error()}
	var astErrs ast.Errors
	if errors.As(err, &astErrs) {
		for _, e := range astErrs {
			if len(be.Where) == 10 {
				break
			}
			w := e.Code
			if e.Location != nil {
				w = e.Location.File + ":" + strconv.Itoa(e.Location.Row) + ": " + e.Code
			}
			be.Where = append(be.Where, w)
		}
	}
	return be
}

// TestRunConfig bounds the test runs of pushes and activations.
type TestRunConfig struct {
	// Concurrency is how many test runs may go on at once. Default 2.
	Concurrency int
	// Timeout bounds one whole run: compile, unit tests, cases. Default 60s.
	Timeout time.Duration
	// MemoryBytes bounds the memory a run's worker may take beyond what it
	// holds when it starts. Default 512 MiB. Enforced with Worker only.
	MemoryBytes int64
	// Worker is the command of the worker process (the warden binary with
	// "policy", "test-worker"), and WorkerEnv extra environment for it
	// (for tests). Empty runs the tests in this process, where neither
	// their memory nor a builtin call past the timeout is bounded: for
	// Warden's own tests, and library use.
	Worker    []string
	WorkerEnv []string
}

func (c TestRunConfig) withDefaults() TestRunConfig {
	if c.Concurrency <= 0 {
		c.Concurrency = 2
	}
	if c.Timeout <= 0 {
		c.Timeout = time.Minute
	}
	if c.MemoryBytes <= 0 {
		c.MemoryBytes = 512 << 20
	}
	return c
}

// maxReport bounds what is read back from a worker.
const maxReport = 16 << 20

// runTests runs b's tests under c's limits.
func (c TestRunConfig) runTests(ctx context.Context, b *Bundle, opts TestOptions) (*TestReport, error) {
	// Checked here too, so that a bundle over a limit says so without a
	// worker being started.
	if err := b.CheckLimits(opts.Engine.Limits); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	var rep *TestReport
	var err error
	if len(c.Worker) == 0 {
		rep, err = Test(ctx, b, opts)
	} else {
		rep, err = c.runWorker(ctx, b, opts)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return nil, &TestsStoppedError{Reason: "time", Limit: c.Timeout.String()}
	}
	return rep, bundleError(err)
}

// workerRequest is what a worker is asked to do.
type workerRequest struct {
	Files       map[string]string `json:"files"`
	EvalTimeout time.Duration     `json:"eval_timeout_ns"`
	UnitTimeout time.Duration     `json:"unit_timeout_ns"`
	Limits      Limits            `json:"limits"`
}

// workerAnswer is what a worker answers: a report, or why there is none.
type workerAnswer struct {
	Report  *TestReport  `json:"report,omitempty"`
	Invalid *BundleError `json:"invalid,omitempty"`
	Failure string       `json:"failure,omitempty"`
}

// workerMemoryEnv carries the worker's memory limit, read before the
// bundle is.
const workerMemoryEnv = "WARDEN_POLICY_TEST_MEMORY"

func (c TestRunConfig) runWorker(ctx context.Context, b *Bundle, opts TestOptions) (*TestReport, error) {
	req := workerRequest{Files: make(map[string]string, len(b.Files)), EvalTimeout: opts.Engine.Timeout,
		UnitTimeout: opts.Timeout, Limits: opts.Engine.Limits}
	for p, content := range b.Files {
		req.Files[p] = string(content) // UTF-8, checked: the JSON is exact
	}
	in, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, c.Worker[0], c.Worker[1:]...)
	// Nothing of the server's environment (an admin token, say) reaches
	// code from a bundle; one CPU, and no goroutine dumps on a crash.
	cmd.Env = append([]string{workerMemoryEnv + "=" + strconv.FormatInt(c.MemoryBytes, 10), "GOMAXPROCS=1", "GOTRACEBACK=none"}, c.WorkerEnv...)
	cmd.Stdin = bytes.NewReader(in)
	out := &cappedBuffer{max: maxReport}
	errOut := &cappedBuffer{max: 4 << 10}
	cmd.Stdout, cmd.Stderr = out, errOut
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		// The server's problem, not the bundle's.
		return nil, fmt.Errorf("starting the policy test worker: %w", err)
	}
	runErr := cmd.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err() // over time (the caller says so), or the caller went away
	}
	if runErr != nil {
		if outOfMemory(errOut.String()) {
			return nil, &TestsStoppedError{Reason: "memory", Limit: mebibytes(c.MemoryBytes)}
		}
		return nil, &TestsStoppedError{Reason: "worker", Limit: runErr.Error()}
	}
	if out.over {
		return nil, &TestsStoppedError{Reason: "worker", Limit: fmt.Sprintf("a report larger than %s", mebibytes(maxReport))}
	}
	var ans workerAnswer
	if err := json.Unmarshal(out.Bytes(), &ans); err != nil {
		return nil, &TestsStoppedError{Reason: "worker", Limit: "an answer that is not JSON"}
	}
	switch {
	case ans.Invalid != nil:
		return nil, ans.Invalid
	case ans.Failure != "":
		return nil, errors.New(ans.Failure)
	case ans.Report == nil:
		return nil, &TestsStoppedError{Reason: "worker", Limit: "no report"}
	}
	return ans.Report, nil
}

// outOfMemory says whether a worker's last words are those of a process
// over its memory: the Go runtime's ("fatal error: out of memory", "cannot
// allocate memory"), or the race detector's ("failed to allocate"), in
// Warden's race-enabled test builds.
func outOfMemory(stderr string) bool {
	for _, s := range []string{"out of memory", "cannot allocate memory", "failed to allocate"} {
		if strings.Contains(stderr, s) {
			return true
		}
	}
	return false
}

func mebibytes(n int64) string { return fmt.Sprintf("%d MiB", n>>20) }

// cappedBuffer keeps at most max bytes and says whether more came.
type cappedBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); len(p) > room {
		b.over = true
		b.Buffer.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return b.Buffer.Write(p)
}
