// Package durable holds the file primitives Warden's own on-disk logs are
// built on: syncing data and directory entries, replacing a file atomically,
// and one process per directory.
package durable

import (
	"os"
	"path/filepath"
)

// SyncDir makes the directory's entries (a new or renamed file's name) durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// WriteAtomic replaces dir/name with b: written to a new file, synced, and
// renamed over the old one, so a crash leaves the old content or the new,
// never part of either.
func WriteAtomic(dir, name string, b []byte) error {
	tmp, err := os.CreateTemp(dir, name+".tmp*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return SyncDir(dir)
}
