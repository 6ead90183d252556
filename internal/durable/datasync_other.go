//go:build !linux

package durable

import "os"

// Datasync flushes f's data (and, where fdatasync is missing, its metadata).
func Datasync(f *os.File) error { return f.Sync() }
