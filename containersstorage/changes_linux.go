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
	"github.com/layercommit/layercommit/internal/userns"
)

// ContainerChanges is Changes of c's upper dir as the store's overlay
// driver wrote it: in a user namespace (a rootless podman store, read
// with rootless podman's mapping) the kernel's marks are user.overlay.*
// (podman mounts with userxattr, and containers/storage reads
// user.overlay.opaque when rootless), and when the driver mounts through
// a mount program (c.MountProgram: fuse-overlayfs) the upper dir has that
// program's marks (diff.WithFuse), which give the changes the kernel's
// upper dir would hold.
func ContainerChanges(c *Container, p compat.Profile) diff.Source {
	var opts []diff.OverlayOption
	if userns.RunningInUserNS() {
		opts = append(opts, diff.WithUserXattr())
	}
	if c.MountProgram {
		opts = append(opts, diff.WithFuse())
	}
	return Changes(c.UpperDir, c.Lowers, p, opts...)
}

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
