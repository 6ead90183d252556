package policy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
	"github.com/warden-run/warden/internal/store/sqlite"
)

// workerEnv makes this test binary the test worker (see TestMain), as
// `warden policy test-worker` is for the server.
const workerEnv = "WARDEN_POLICY_TEST_WORKER_FOR_TESTS"

func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) == "1" {
		if err := policy.RunTestWorker(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// workerRuns are test runs in worker processes of this test binary.
func workerRuns(tests policy.TestRunConfig) policy.TestRunConfig {
	tests.Worker = []string{os.Args[0]}
	tests.WorkerEnv = []string{workerEnv + "=1"}
	return tests
}

// openRegistry is a registry on a real SQLite store in a temporary directory.
func openRegistry(t *testing.T, tests policy.TestRunConfig) (*policy.Registry, *sqlite.Store) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "warden.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r, err := policy.OpenRegistry(ctx, policy.RegistryConfig{Tests: tests}, st)
	if err != nil {
		t.Fatal(err)
	}
	return r, st
}

// refusedPushes are the recorded policy.push_refused events.
func refusedPushes(t *testing.T, st *sqlite.Store) []store.Event {
	t.Helper()
	evs, err := st.Events(context.Background(), store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var out []store.Event
	for _, ev := range evs {
		if ev.Action == "policy.push_refused" {
			out = append(out, ev)
		}
	}
	return out
}

// A pushed bundle's tests are code from whoever pushed it, run on the
// server: six tests that allocate took 2.8 GB of the server's memory. In a
// worker with a memory limit they are stopped, the push is refused and the
// refusal recorded; the server's process never holds that memory.
func TestPushWhoseTestsAllocateIsStopped(t *testing.T) {
	t.Parallel()
	r, st := openRegistry(t, workerRuns(policy.TestRunConfig{MemoryBytes: 256 << 20}))
	// 16 strings of 64 MiB, all held: 1 GiB, in few large steps, so that
	// the memory runs out long before the unit test's own 5 s (under the
	// race detector too).
	hog := bundle(map[string]string{
		"policy.rego":      "package warden.authz\n\nallow := true\n",
		"data.json":        `{"blob": "` + strings.Repeat("x", 128<<10) + `"}`,
		"policy_test.rego": "package warden.authz_test\n\ntest_hog if {\n\txs := [concat(\"\", [data.blob | some j in numbers.range(1, 512)]) | some i in numbers.range(1, 16)]\n\tcount(xs) == 16\n}\n",
	})
	_, _, _, err := r.Push(context.Background(), "admin:test", hog, "allocates")
	var stopped *policy.TestsStoppedError
	if !errors.As(err, &stopped) || stopped.Reason != "memory" {
		t.Fatalf("push: %v, want the tests stopped over their memory", err)
	}
	if !strings.Contains(err.Error(), "256 MiB") || !strings.Contains(err.Error(), "policy.tests.memory_bytes") {
		t.Errorf("error %q does not name the limit", err)
	}
	refused := refusedPushes(t, st)
	if len(refused) != 1 || refused[0].Target != hog.Digest() {
		t.Fatalf("recorded %+v, want the refused push of %s", refused, hog.Digest())
	}
	var detail map[string]any
	if err := json.Unmarshal(refused[0].Detail, &detail); err != nil {
		t.Fatal(err)
	}
	if detail["reason"] != policy.RefusedTestsStopped || detail["stopped"] != "memory" {
		t.Fatalf("recorded detail %v", detail)
	}
	if vs, _ := r.Versions(context.Background(), "", 10); len(vs) != 0 {
		t.Fatalf("a bundle whose tests were stopped was stored: %v", vs)
	}
}

// A test run that outlasts its time is stopped (its worker killed), and
// the push refused.
func TestPushWhoseTestsRunLongIsStopped(t *testing.T) {
	t.Parallel()
	r, _ := openRegistry(t, workerRuns(policy.TestRunConfig{Timeout: time.Second}))
	slow := bundle(map[string]string{
		"policy.rego":      "package warden.authz\n\nallow := true\n",
		"policy_test.rego": "package warden.authz_test\n\ntest_slow if count([x | some x in numbers.range(1, 1000000000)]) > 0\n",
	})
	_, _, _, err := r.Push(context.Background(), "admin:test", slow, "slow")
	var stopped *policy.TestsStoppedError
	if !errors.As(err, &stopped) || stopped.Reason != "time" || !strings.Contains(err.Error(), "policy.tests.timeout") {
		t.Fatalf("push: %v, want the tests stopped over their time", err)
	}
}

// A worker answers as the tests in the server's process would: a passing
// bundle is stored, a failing one refused with its report, a broken one
// with where OPA found the problem.
func TestWorkerAnswersAsInProcess(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		files map[string]string
		check func(t *testing.T, rep *policy.TestReport, created bool, err error)
	}{
		{"passes", map[string]string{"policy.rego": "package warden.authz\n\nallow := true\n",
			"policy_test.rego": "package warden.authz_test\n\nimport data.warden.authz\n\ntest_open if authz.allow\n"},
			func(t *testing.T, rep *policy.TestReport, created bool, err error) {
				if err != nil || !created || rep.Counts().Pass != 1 {
					t.Fatalf("push: %v created %v report %+v", err, created, rep)
				}
			}},
		{"fails", map[string]string{"policy.rego": "package warden.authz\n\nallow := true\n",
			"policy_test.rego": "package warden.authz_test\n\nimport data.warden.authz\n\ntest_closed if not authz.allow\n"},
			func(t *testing.T, rep *policy.TestReport, created bool, err error) {
				var failed *policy.TestsFailedError
				if !errors.As(err, &failed) || failed.Report.Counts().Fail != 1 {
					t.Fatalf("push: %v, want one failing test", err)
				}
			}},
		{"does not compile", map[string]string{"policy.rego": "package warden.authz\n\nallow if x\n"},
			func(t *testing.T, rep *policy.TestReport, created bool, err error) {
				var be *policy.BundleError
				if !errors.As(err, &be) || !errors.Is(err, policy.ErrInvalidBundle) || len(be.Where) == 0 || !strings.HasPrefix(be.Where[0], "policy.rego:3: ") {
					t.Fatalf("push: %v, want an invalid bundle with where", err)
				}
			}},
	}
	r, _ := openRegistry(t, workerRuns(policy.TestRunConfig{}))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, rep, created, err := r.Push(context.Background(), "admin:test", bundle(c.files), c.name)
			c.check(t, rep, created, err)
		})
	}
}

// At most Concurrency test runs go on at once: a slot is refused, not
// waited for, by TryTestSlot, and waited for by Push.
func TestTestSlots(t *testing.T) {
	t.Parallel()
	r, _ := openRegistry(t, policy.TestRunConfig{Concurrency: 1})
	slot, err := r.TryTestSlot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.TryTestSlot(); !errors.Is(err, policy.ErrBusy) {
		t.Fatalf("a second slot: %v, want ErrBusy", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, _, err := r.Push(ctx, "admin:test", bundle(map[string]string{"policy.rego": "package warden.authz\nallow := true"}), "waits"); !errors.Is(err, policy.ErrBusy) {
		t.Fatalf("push while the only slot is held: %v, want ErrBusy once its context ends", err)
	}
	slot.Release()
	slot.Release() // harmless
	if _, _, created, err := r.Push(context.Background(), "admin:test", bundle(map[string]string{"policy.rego": "package warden.authz\nallow := true"}), "free"); err != nil || !created {
		t.Fatalf("push once free: %v %v", created, err)
	}
}

// A worker that cannot be started is the server's failure, not the
// bundle's: an error that is not a refusal of the bundle.
func TestWorkerThatCannotStart(t *testing.T) {
	t.Parallel()
	r, _ := openRegistry(t, policy.TestRunConfig{Worker: []string{filepath.Join(t.TempDir(), "no-such-warden")}})
	_, _, _, err := r.Push(context.Background(), "admin:test", bundle(map[string]string{"policy.rego": "package warden.authz\nallow := true"}), "x")
	if err == nil || errors.Is(err, policy.ErrTestsStopped) || errors.Is(err, policy.ErrInvalidBundle) || policy.RefusalReason(err) != policy.RefusedError {
		t.Fatalf("push: %v, want an error of the server", err)
	}
}
