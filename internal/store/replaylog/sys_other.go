//go:build !linux

package replaylog

import (
	"fmt"
	"os"
	"path/filepath"
)

func datasync(f *os.File) error { return f.Sync() }

// lockDir creates the lock file; other systems get no exclusive lock.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("replay log: %w", err)
	}
	return f, nil
}
