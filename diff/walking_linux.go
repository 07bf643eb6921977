package diff

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	overlayfs "github.com/layercommit/layercommit/internal/overlay"
)

type snapshot struct {
	lowers []string
	upper  string
	warn   Warner
}

// Snapshot is the change set of an overlay snapshot (a container's upper
// dir over its lower dirs, top first) as containerd's walking differ
// computes it for ctr snapshots diff, Docker 29's containerd image store
// and BuildKit: Walking between the merge of the lowers and the
// container's merged view.
//
// Each walk mounts both views read-only, as the differ's
// mount.WithTempMount and WithReadonlyTempMount do, through
// internal/overlay (its pinned options are the ones containerd's
// overlayfs snapshotter gives: index=off, and the kernel's default
// redirect and metacopy handling for a read-only mount). The lower view
// is an overlay of the lowers, the lower dir itself when there is one
// (the snapshotter's bind mount) or an empty dir when there is none; the
// merged view is an overlay whose top lower is the upper dir, so no work
// dir is needed and nothing is written, even while the container runs
// on the upper dir. Inode numbers and link counts, which decide hard
// links, are the kernel's through those mounts, as containerd sees them.
// The mounts (under os.TempDir) are gone when Changes returns, also on
// error. Mounting needs CAP_SYS_ADMIN.
func Snapshot(lowers []string, upper string, warn Warner) Source {
	return &snapshot{lowers: append([]string(nil), lowers...), upper: upper, warn: warn}
}

func (s *snapshot) Changes(ctx context.Context, fn ChangeFunc) (err error) {
	if err := checkRootDir(s.upper); err != nil {
		return fmt.Errorf("snapshot upper dir: %w", err)
	}
	for _, l := range s.lowers {
		if err := checkRootDir(l); err != nil {
			return fmt.Errorf("snapshot lower dir: %w", err)
		}
	}
	tmp, err := os.MkdirTemp("", "layercommit-walk-")
	if err != nil {
		return fmt.Errorf("making the snapshot's mount points: %w", err)
	}
	var mounted []string
	defer func() {
		// Never remove a dir that is still a mount point.
		clean := true
		for _, m := range mounted {
			if uerr := unmount(m); uerr != nil {
				clean = false
				if err == nil {
					err = uerr
				}
			}
		}
		if clean {
			os.RemoveAll(tmp)
		}
	}()
	mount := func(name string, lowers []string) (string, error) {
		if len(lowers) == 1 {
			return lowers[0], nil
		}
		dir := filepath.Join(tmp, name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			return "", err
		}
		if len(lowers) == 0 {
			return dir, nil
		}
		if err := overlayfs.Mount(dir, overlayfs.Options{Lowers: lowers, ReadOnly: true}); err != nil {
			return "", err
		}
		mounted = append(mounted, dir)
		return dir, nil
	}
	lowerRoot, err := mount("lower", s.lowers)
	if err != nil {
		return fmt.Errorf("mounting the snapshot's lower view: %w", err)
	}
	upperRoot, err := mount("merged", append([]string{s.upper}, s.lowers...))
	if err != nil {
		return fmt.Errorf("mounting the snapshot's merged view: %w", err)
	}
	w := Walking(lowerRoot, upperRoot, s.warn).(*naive)
	if len(s.lowers) > 0 {
		// Where the upper dir has no entry, both views show the same
		// lower file: its content is not read twice to find it equal.
		w.upper = s.upper
	}
	return w.Changes(ctx, fn)
}

// unmount unmounts a mount of Snapshot, lazily if it is busy.
func unmount(dir string) error {
	err := unix.Unmount(dir, 0)
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(dir, unix.MNT_DETACH)
	}
	if err != nil {
		return &os.PathError{Op: "umount", Path: dir, Err: err}
	}
	return nil
}
