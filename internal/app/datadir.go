package app

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
)

// openDataDir makes the data directory (mode 0700), or checks the one that
// is there. It holds the master key, the bootstrap admin token, the
// embedded store and its audit log: a directory that others can list,
// enter or write to is refused, with the command that fixes it. Warden
// does not change the mode of a directory it did not make: the operator
// chose it, and may have meant it for something else too.
func openDataDir(dir string) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("data directory: %w", err)
	case !st.IsDir():
		return fmt.Errorf("data directory %s is not a directory", dir)
	}
	// Windows has no mode bits to check: Go reports them all set.
	if perm := st.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return fmt.Errorf("data directory %s is open to others (mode %04o); it holds the master key and the admin token: run chmod 700 %s", dir, perm, dir)
	}
	return nil
}
