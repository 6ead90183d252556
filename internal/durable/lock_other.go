//go:build !unix

package durable

import (
	"errors"
	"os"
)

// LockDir refuses: without an exclusive lock, two processes could share a
// directory and each miss what the other records.
func LockDir(dir, what string) (*os.File, error) {
	return nil, errors.New(what + ": exclusive directory locks are not supported on this system")
}
