// Package cleanup is what every store's gc shares: the report of what it
// removed and what it kept (Report), and the removal of leftover temp
// entries by name prefix. Which entries of a store are leftovers is said
// by the store's owner package (export for OCI layouts and archives,
// dockerroot for a data root, statedir for the state dir); this package
// knows no layout.
package cleanup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/layercommit/layercommit/internal/flock"
)

// Report receives what a cleanup does, in order. Either func may be nil.
type Report struct {
	// Removed is called with each path removed (a file or a whole tree).
	Removed func(path string)
	// Kept is called with each leftover left in place and why.
	Kept func(path, why string)
}

// Remove removes p (a file or a whole tree) and reports it.
func (r Report) Remove(p string) error {
	if err := os.RemoveAll(p); err != nil {
		return fmt.Errorf("removing %s: %w", p, err)
	}
	if r.Removed != nil {
		r.Removed(p)
	}
	return nil
}

// Keep reports a leftover left in place.
func (r Report) Keep(p, why string) {
	if r.Kept != nil {
		r.Kept(p, why)
	}
}

// RemoveTemps removes the entries of dir whose names start with prefix.
// The caller holds the store's lock, so no writer is making them. A
// missing dir has nothing to remove.
func (r Report) RemoveTemps(dir, prefix string) error {
	return r.removeTemps(dir, prefix, false)
}

// RemoveUnheldTemps removes the entries of dir whose names start with
// prefix, except those whose flock a live process holds (their writer
// holds them shared while it works; see flock.Try): those are kept and
// reported.
func (r Report) RemoveUnheldTemps(dir, prefix string) error {
	return r.removeTemps(dir, prefix, true)
}

func (r Report) removeTemps(dir, prefix string, perEntryLock bool) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", dir, err)
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if !perEntryLock {
			if err := r.Remove(p); err != nil {
				return err
			}
			continue
		}
		l, ok := flock.Try(p)
		if !ok {
			r.Keep(p, "in use by a running layercommit")
			continue
		}
		err := r.Remove(p)
		l.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}
