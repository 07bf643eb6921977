package builder

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"

	"golang.org/x/sys/unix"
)

// contextView returns a directory holding the context named name (""
// for the build context, else a local --build-context) as BuildKit's
// local source delivers it to a RUN --mount bind: what its .dockerignore
// keeps, every entry owned by 0:0, modes and mtimes kept, hard links
// kept, fifos kept, no xattrs, sockets and devices left out, the root
// 0755. It is made once per build, on first use, under the state dir's
// tmp, and removed when the build ends. A copy, not a view of the
// directory: no kernel mount can show every owner as root.
func (b *build) contextView(name string) (string, error) {
	b.viewsMu.Lock()
	defer b.viewsMu.Unlock()
	if d, ok := b.views[name]; ok {
		return d, nil
	}
	c := b.bctx
	if name != "" {
		local, ok := b.localContext(name)
		if !ok {
			return "", fmt.Errorf("context %s is not a local directory", name)
		}
		var err error
		if c, err = openContext(local); err != nil {
			return "", fmt.Errorf("context %s: %w", name, err)
		}
		defer c.Close()
	}
	dir, err := b.st.TempDir("context-")
	if err != nil {
		return "", err
	}
	if err := c.copyTo(dir); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("copying the context for a bind mount: %w", err)
	}
	if b.views == nil {
		b.views = map[string]string{}
	}
	b.views[name] = dir
	return dir, nil
}

// removeViews removes the context copies of contextView.
func (b *build) removeViews() {
	b.viewsMu.Lock()
	defer b.viewsMu.Unlock()
	for _, d := range b.views {
		os.RemoveAll(d)
	}
	b.views = nil
}

// copyTo copies the context into the empty dir dst (see contextView).
func (c *buildContext) copyTo(dst string) error {
	type dirAttr struct {
		host string
		mode fs.FileMode
		mt   unix.Timespec
		// ignored: excluded but walked for re-included paths; dropped
		// when nothing was kept in it.
		ignored bool
	}
	var dirs []dirAttr
	links := map[[2]uint64]string{} // dev, ino -> copied path
	err := fs.WalkDir(c.root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		host := filepath.Join(dst, filepath.FromSlash(p))
		if p == "." {
			return os.Chmod(dst, 0o755)
		}
		ignored := c.ignored(p)
		if ignored && (!d.IsDir() || !c.ignore.Exclusions()) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		fi, err := c.root.Lstat(p)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat", p)
		}
		mt := unix.Timespec(st.Mtim)
		times := []unix.Timespec{mt, mt}
		perm := fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		switch fi.Mode().Type() {
		case fs.ModeDir:
			if err := os.Mkdir(host, 0o700); err != nil {
				return err
			}
			dirs = append(dirs, dirAttr{host, perm, mt, ignored})
			return nil
		case fs.ModeSymlink:
			target, err := c.root.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, host); err != nil {
				return err
			}
			return unix.UtimesNanoAt(unix.AT_FDCWD, host, times, unix.AT_SYMLINK_NOFOLLOW)
		case fs.ModeNamedPipe:
			if err := unix.Mkfifo(host, 0o600); err != nil {
				return err
			}
		case 0:
			id := [2]uint64{uint64(st.Dev), st.Ino}
			if st.Nlink > 1 {
				if first, ok := links[id]; ok {
					return os.Link(first, host)
				}
				links[id] = host
			}
			if err := copyRegular(c.root, p, host); err != nil {
				return err
			}
		default:
			return nil // sockets and devices: not sent
		}
		if err := os.Chmod(host, perm); err != nil {
			return err
		}
		return unix.UtimesNanoAt(unix.AT_FDCWD, host, times, unix.AT_SYMLINK_NOFOLLOW)
	})
	if err != nil {
		return err
	}
	// Deepest first: dropping an empty ignored dir, and setting modes
	// and times once nothing more is made in a dir.
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i].host) > len(dirs[j].host) })
	for _, d := range dirs {
		if d.ignored {
			if err := os.Remove(d.host); err == nil {
				continue
			} else if !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
				return err
			}
		}
		if err := os.Chmod(d.host, d.mode); err != nil {
			return err
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, d.host, []unix.Timespec{d.mt, d.mt}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	}
	return nil
}

// copyRegular copies the context file p to the new file host, cloning
// its extents when the file systems can (FICLONE), else by reading it.
func copyRegular(root *os.Root, p, host string) (err error) {
	in, err := root.Open(p)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(host, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	if unix.IoctlFileClone(int(out.Fd()), int(in.Fd())) == nil {
		return nil
	}
	_, err = io.Copy(out, in)
	return err
}
