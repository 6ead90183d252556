//go:build !linux

package policy

import "runtime/debug"

// limitMemory can only ask the GC to keep the heap within budget here:
// there is no limit on a process's data outside Linux (see
// memlimit_linux.go), so a test run is bounded by its time alone.
func limitMemory(budget int64) error {
	debug.SetMemoryLimit(budget)
	return nil
}
