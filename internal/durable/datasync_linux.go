package durable

import (
	"os"
	"syscall"
)

// Datasync flushes f's data and the metadata needed to read it back.
func Datasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
