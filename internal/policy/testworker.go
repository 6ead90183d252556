package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

// maxTestOutput bounds the print output a worker reports per unit test.
const maxTestOutput = 64 << 10

// RunTestWorker is the worker process of a test run (`warden policy
// test-worker`, started by the server, never by hand): it limits its own
// memory to what the server set in its environment, then reads one
// request from in, runs the bundle's tests and writes the answer to out.
// Over its memory the process dies; the server says so.
func RunTestWorker(ctx context.Context, in io.Reader, out io.Writer) error {
	budget, err := strconv.ParseInt(os.Getenv(workerMemoryEnv), 10, 64)
	if err != nil || budget <= 0 {
		return fmt.Errorf("%s: want the memory limit in bytes; this command is started by warden serve", workerMemoryEnv)
	}
	// Before anything of the bundle is read.
	if err := limitMemory(budget); err != nil {
		return fmt.Errorf("limiting the memory of the test worker: %w", err)
	}
	var req workerRequest
	if err := json.NewDecoder(io.LimitReader(in, 2*int64(MaxLimits().Bytes)+1<<20)).Decode(&req); err != nil {
		return fmt.Errorf("reading the request: %w", err)
	}
	b := &Bundle{Files: make(map[string][]byte, len(req.Files))}
	for p, c := range req.Files {
		b.Files[p] = []byte(c)
	}
	rep, err := Test(ctx, b, TestOptions{Timeout: req.UnitTimeout, Engine: EngineConfig{Timeout: req.EvalTimeout, Limits: req.Limits}})
	var ans workerAnswer
	switch {
	case err == nil:
		for i := range rep.Tests {
			if o := rep.Tests[i].Output; len(o) > maxTestOutput {
				rep.Tests[i].Output = o[:maxTestOutput] + "\n[output cut at 64 KiB]"
			}
		}
		ans.Report = rep
	case errors.Is(err, ErrInvalidBundle):
		be, _ := bundleError(err).(*BundleError)
		if be == nil {
			be = &BundleError{Message: err.Error()}
		}
		ans.Invalid = be
	default:
		ans.Failure = err.Error()
	}
	return json.NewEncoder(out).Encode(ans)
}
