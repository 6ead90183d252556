//go:build !linux

package durable

import (
	"fmt"
	"os"
	"path/filepath"
)

// Datasync flushes f's data.
func Datasync(f *os.File) error { return f.Sync() }

// LockDir creates the lock file; other systems get no exclusive lock.
func LockDir(dir, what string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return f, nil
}
