// Package atomicfile writes a file under a temporary name beside its
// destination and renames it into place only when it is complete, so a
// reader sees either the old file or the whole new one.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// File is a file being written. Call Commit to publish it or Abort to
// remove it; Abort after Commit does nothing, so `defer f.Abort()` is safe.
type File struct {
	*os.File
	dest string
	mode os.FileMode
	done bool
}

// TempPrefix starts the names of files being written; gc removes leftovers.
const TempPrefix = ".layercommit-tmp-"

// Create starts writing dest with the given mode.
func Create(dest string, mode os.FileMode) (*File, error) {
	dir, base := filepath.Split(dest)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, TempPrefix+base+"-*")
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", dest, err)
	}
	return &File{File: f, dest: dest, mode: mode}, nil
}

// Commit syncs the file, gives it its mode, renames it to its destination
// and syncs the directory.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("writing %s: already committed or aborted", f.dest)
	}
	f.done = true
	tmp := f.Name()
	fail := func(err error) error {
		f.File.Close()
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", f.dest, err)
	}
	if err := f.Chmod(f.mode); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.File.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", f.dest, err)
	}
	if err := os.Rename(tmp, f.dest); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", f.dest, err)
	}
	return SyncDir(filepath.Dir(f.dest))
}

// Abort removes the unfinished file.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.File.Close()
	os.Remove(f.Name())
}

// SyncDir fsyncs a directory so that a rename in it is durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// WriteFile writes b to dest through a temp file, fsync and rename, as
// os.WriteFile would but all-or-nothing: a reader sees the old file or
// the whole new one.
func WriteFile(dest string, b []byte, mode os.FileMode) error {
	f, err := Create(dest, mode)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("writing %s: %w", dest, err)
	}
	return f.Commit()
}
