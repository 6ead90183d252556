package cli

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// keepFromChildren keeps what this process holds from the programs it
// starts (the MCP server of `warden mcp wrap`). Every open file descriptor
// but standard input, output and error is closed on exec: Go opens its own
// so, but one inherited from the caller (a key passed as /dev/fd/3) would
// otherwise pass on to the server. And the process becomes non-dumpable:
// another process of the same user, the server included, can then neither
// trace it nor read its memory or environment through /proc, and no core
// dump holds its secrets.
func keepFromChildren() error {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("open files: %w", err)
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
	const prSetDumpable = 4
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetDumpable, 0, 0); errno != 0 {
		return fmt.Errorf("prctl(PR_SET_DUMPABLE): %w", errno)
	}
	return nil
}
