package containersstorage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/diff"
)

// Changes is the change set of a container's upper dir over its lowers
// (top first) as containers/storage's overlay driver diffs it under
// profile p: the overlay walk, and, when p.OpaqueOnlyOverLower, an opaque
// directory keeps its marker only if some lower holds the path as
// anything but a whiteout (the driver stats each read-only layer in turn,
// following symlinks, and stops at the first that has it).
func Changes(upper string, lowers []string, p compat.Profile, opts ...diff.OverlayOption) diff.Source {
	src := diff.Overlay(upper, append([]diff.OverlayOption{diff.WithLowers(lowers...)}, opts...)...)
	if !p.OpaqueOnlyOverLower {
		return src
	}
	return opaqueFilter{src: src, lowers: lowers}
}

type opaqueFilter struct {
	src    diff.Source
	lowers []string
}

func (f opaqueFilter) Changes(ctx context.Context, fn diff.ChangeFunc) error {
	return f.src.Changes(ctx, func(c diff.Change) error {
		if c.Opaque {
			below, err := f.below(c.Path)
			if err != nil {
				return err
			}
			c.Opaque = below
		}
		return fn(c)
	})
}

// below reports whether rel exists in a lower as anything but a whiteout.
func (f opaqueFilter) below(rel string) (bool, error) {
	for _, l := range f.lowers {
		var st unix.Stat_t
		err := unix.Stat(filepath.Join(l, rel), &st)
		switch {
		case err == nil:
			whiteout := st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
			return !whiteout, nil
		case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR):
			continue
		default:
			return false, fmt.Errorf("looking for %s below the upper dir: %w", rel, &os.PathError{Op: "stat", Path: filepath.Join(l, rel), Err: err})
		}
	}
	return false, nil
}
