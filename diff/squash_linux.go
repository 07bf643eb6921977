package diff

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"
)

// Squash is the whole file system of a stack of overlay-form dirs as one
// change set of adds: dirs are top first (a container's upper dir, then
// the unpacked layers of its base, each as overlayfs keeps a layer:
// whiteouts are character devices 0/0, opaque dirs carry overlay.opaque).
// Each path is taken from the top-most dir that has it; a whiteout there
// hides it and an opaque dir hides what the dirs below have in it, so the
// change set holds what a container on that stack sees, with no whiteout
// and no opaque marker. Sockets are skipped (with a warning), as in
// Overlay.
//
// The merge is the walk Overlay already uses below a redirected or opaque
// directory, read straight from the dirs: no overlay is mounted, so no
// privilege is needed and nothing is left mounted by a killed commit.
// Redirects and metacopy files in the top dir are resolved in the dirs
// below it.
//
// Hard links: the names of one inode (one file of one dir) stay one link
// set in the layer. Inode numbers of different file systems may be equal,
// so a link set is keyed by device and inode, never by inode alone: two
// unrelated files of an upper dir on tmpfs and a layer dir on ext4 never
// become links of each other. A name whose link partner another dir
// replaced is a file of its own, as in the mounted overlay.
//
// Order is the package's (depth first, names sorted by raw bytes).
func Squash(dirs []string, opts ...OverlayOption) Source {
	o := &overlay{prefix: OverlayXattrPrefix, warn: func(string, ...any) {}}
	for _, opt := range opts {
		opt(o)
	}
	if len(dirs) > 1 {
		o.lowers = append([]string(nil), dirs[1:]...)
	}
	return &squash{o: o, dirs: append([]string(nil), dirs...)}
}

type squash struct {
	o    *overlay
	dirs []string
}

// devIno names one inode on one file system.
type devIno struct {
	dev uint64
	ino uint64
}

func (s *squash) Changes(ctx context.Context, fn ChangeFunc) error {
	if len(s.dirs) == 0 {
		return fmt.Errorf("squash: no dirs")
	}
	for _, d := range s.dirs {
		if err := checkRootDir(d); err != nil {
			return fmt.Errorf("squash: %w", err)
		}
	}
	// Link sets get numbers of their own (1, 2, ...) in Info.Ino, the key
	// of the header rules' link table; the real inode stays the one the
	// data read checks (sourceIno).
	ids := map[devIno]uint64{}
	return s.o.walkMerged(ctx, "", s.dirs, func(c Change) error {
		if c.Info.IsDir() || c.Info.Nlink < 2 {
			return fn(c)
		}
		var st unix.Stat_t
		if err := unix.Lstat(c.Source, &st); err != nil {
			return fmt.Errorf("squash: lstat %s: %w", c.Source, err)
		}
		if st.Ino != c.dataIno() {
			return fmt.Errorf("squash: %s: %w", c.Path, ErrFileChanged)
		}
		k := devIno{dev: uint64(st.Dev), ino: st.Ino}
		id, ok := ids[k]
		if !ok {
			id = uint64(len(ids) + 1)
			ids[k] = id
		}
		c.sourceIno = c.dataIno()
		c.Info.Ino = id
		return fn(c)
	})
}
