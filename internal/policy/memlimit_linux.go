package policy

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"syscall"
)

// limitMemory caps this process's memory at what it maps now plus budget.
//
// RLIMIT_DATA (Linux 4.7 and later) counts the private writable mappings:
// the Go heap and goroutine stacks, everything a test run allocates. Past
// it a mapping fails and the Go runtime dies with "out of memory", which
// nothing in the process can catch. RLIMIT_AS would count address space
// that is only reserved: a Go binary reserves over a gigabyte of it before
// main runs, so a limit on it says little about memory. The limit is
// relative to the process's own start, which is what the bundle adds. The
// GC is told the budget too, so that it works harder before the wall.
func limitMemory(budget int64) error {
	base, err := vmData()
	if err != nil {
		return err
	}
	limit := uint64(base + budget)
	if err := syscall.Setrlimit(syscall.RLIMIT_DATA, &syscall.Rlimit{Cur: limit, Max: limit}); err != nil {
		return err
	}
	debug.SetMemoryLimit(budget * 3 / 4)
	return nil
}

// vmData is this process's VmData, in bytes.
func vmData() (int64, error) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	s := bufio.NewScanner(bytes.NewReader(status))
	for s.Scan() {
		if v, ok := bytes.CutPrefix(s.Bytes(), []byte("VmData:")); ok {
			kb, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(v), []byte("kB")))), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/self/status: VmData: %w", err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/self/status has no VmData")
}
