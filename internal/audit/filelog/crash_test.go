package filelog_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/audittest"
	"github.com/warden-run/warden/internal/audit/filelog"
)

const crashChildEnv = "WARDEN_AUDIT_CRASH_CHILD"

// TestCrashChild is not a test of its own: run by TestCrashLosesNothing in a
// process of its own, it appends from 16 goroutines until it is killed,
// printing each index the log acknowledged.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("run by TestCrashLosesNothing")
	}
	b, err := filelog.Open(filelog.Config{Dir: dir, SegmentEntries: 512})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	l, err := audit.Open(audit.Config{CheckpointEvery: 100, CheckpointInterval: 20 * time.Millisecond}, b, childSigner())
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	for w := range 16 {
		go func() {
			for n := 0; ; n++ {
				e := audittest.Entry(n)
				e.Action = fmt.Sprintf("w%d-%d", w, n)
				idx, err := l.Append(context.Background(), e)
				if err != nil {
					continue
				}
				mu.Lock()
				fmt.Fprintf(out, "ack %d %s\n", idx, e.Action)
				out.Flush() // acknowledged before the next append: visible to the parent
				mu.Unlock()
			}
		}()
	}
	select {}
}

// childSigner is the same key in parent and child: it comes from the environment.
func childSigner() *audit.CheckpointSigner {
	s, err := audit.NewCheckpointSigner(os.Getenv(crashChildEnv + "_KEY"))
	if err != nil {
		panic(err)
	}
	return s
}

// TestCrashLosesNothing kills a process appending under load with SIGKILL
// at a random moment, three times over the same log: after each restart
// every append that had returned is there, unchanged, and the log verifies.
func TestCrashLosesNothing(t *testing.T) {
	if os.Getenv(crashChildEnv) != "" {
		t.Skip("in the child")
	}
	dir := filepath.Join(t.TempDir(), "audit")
	skey, vkey, err := audit.NewCheckpointKey("warden.test/audit")
	if err != nil {
		t.Fatal(err)
	}
	acked := map[int64]string{}
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, crashChildEnv+"_KEY="+skey)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		var lines []string
		go func() {
			defer close(done)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines = append(lines, sc.Text())
			}
		}()
		time.Sleep(time.Duration(300+rand.IntN(700)) * time.Millisecond)
		cmd.Process.Kill() // SIGKILL
		cmd.Wait()
		<-done
		n := 0
		for _, line := range lines {
			var idx int64
			var action string
			if _, err := fmt.Sscanf(line, "ack %d %s", &idx, &action); err != nil {
				if strings.HasPrefix(line, "error") {
					t.Fatalf("round %d: child: %s", round, line)
				}
				continue
			}
			if prev, ok := acked[idx]; ok && prev != action {
				t.Fatalf("round %d: index %d acknowledged twice, as %s and %s", round, idx, prev, action)
			}
			acked[idx] = action
			n++
		}
		if n == 0 {
			t.Fatalf("round %d: the child acknowledged nothing", round)
		}
		t.Logf("round %d: killed after %d acknowledged appends", round, n)

		// Restart: everything acknowledged is there, and the log verifies.
		b, err := filelog.Open(filelog.Config{Dir: dir, SegmentEntries: 512})
		if err != nil {
			t.Fatalf("round %d: reopen after the crash: %v", round, err)
		}
		l, err := audit.Open(audit.Config{}, b, signerFrom(t, skey))
		if err != nil {
			t.Fatal(err)
		}
		size, _ := l.Size(context.Background())
		for idx, action := range acked {
			if idx >= size {
				t.Fatalf("round %d: acknowledged entry %d lost: the log has %d entries", round, idx, size)
			}
			d, err := l.Read(context.Background(), idx, idx+1)
			if err != nil {
				t.Fatal(err)
			}
			e, err := audit.DecodeEntry(d[0])
			if err != nil || e.Action != action {
				t.Fatalf("round %d: entry %d is %v (%v), acknowledged as %s", round, idx, e, err, action)
			}
		}
		l.Close() // integrates and signs a checkpoint over everything
		cv, _ := audit.NewCheckpointVerifier(vkey)
		src, err := filelog.ReadItems(dir)
		if err != nil {
			t.Fatal(err)
		}
		r, err := audit.Verify(src, cv, nil)
		if err != nil || !r.OK() || r.Entries != size || r.Uncovered != 0 {
			t.Fatalf("round %d: verify after the crash: %+v %v", round, r, err)
		}
		b.Close()
	}
}

func signerFrom(t *testing.T, skey string) *audit.CheckpointSigner {
	s, err := audit.NewCheckpointSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
