package builder

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"

	"golang.org/x/sys/unix"
)

// dirFS is a source tree that can open one of its directories, resolved
// inside the tree as its Open resolves names (the context through
// os.Root, an image root through safepath). walkTree works below that
// descriptor: each directory is resolved once, not once per entry.
type dirFS interface {
	openDir(name string) (*os.File, error)
}

func (f contextFS) openDir(name string) (*os.File, error) {
	d, err := f.c.root.Open(name)
	if err != nil {
		return nil, err
	}
	if fi, err := d.Stat(); err != nil || !fi.IsDir() {
		d.Close()
		return nil, &fs.PathError{Op: "opendir", Path: name, Err: unix.ENOTDIR}
	}
	return d, nil
}

func (f rootFS) openDir(name string) (*os.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "opendir", Path: name, Err: fs.ErrInvalid}
	}
	d, err := f.r.OpenDir(name)
	if err != nil {
		return nil, &fs.PathError{Op: "opendir", Path: name, Err: unwrapPathError(err)}
	}
	return d, nil
}

// srcEntry is one entry below a directory source, as walkTree reports it.
// dirfd is valid only during the callback.
type srcEntry struct {
	p     string // its name in the source FS (.dockerignore, digests)
	r     string // its name below the walked directory
	dirfd int    // the open directory that holds it
	name  string // its name in dirfd
	fi    *statInfo
}

// walkTree calls fn for every entry below the directory top of fsys (not
// for top itself), in fs.WalkDir's order: lexical by name, a directory
// before its contents. Entries are read with fstatat in the directory
// that holds them, and directories opened with O_NOFOLLOW there: nothing
// below top is followed, so a symlink in the tree (however it is swapped
// in) never leads the walk out of it. fn returning fs.SkipDir for a
// directory skips its contents; any other error stops the walk. An entry
// removed between listing and stat is left out.
func walkTree(fsys fs.FS, top string, fn func(e *srcEntry) error) error {
	df, ok := fsys.(dirFS)
	if !ok {
		return fmt.Errorf("walking %s: the source cannot open directories", top)
	}
	d, err := df.openDir(top)
	if err != nil {
		return err
	}
	defer d.Close()
	return walkDirFD(d, top, "", fn)
}

// walkDirFD walks the open directory d, named p in the source FS and r
// below the walk's top ("" for the top).
func walkDirFD(d *os.File, p, r string, fn func(e *srcEntry) error) error {
	names, err := d.Readdirnames(-1)
	if err != nil {
		return &fs.PathError{Op: "readdir", Path: p, Err: unwrapPathError(err)}
	}
	sort.Strings(names)
	dirfd := int(d.Fd())
	for _, n := range names {
		e := srcEntry{p: path.Join(p, n), r: n, dirfd: dirfd, name: n, fi: &statInfo{name: n}}
		if r != "" {
			e.r = r + "/" + n
		}
		if err := unix.Fstatat(dirfd, n, &e.fi.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if err == unix.ENOENT {
				continue
			}
			return &fs.PathError{Op: "lstat", Path: e.p, Err: err}
		}
		err := fn(&e)
		if !e.fi.IsDir() {
			if err != nil {
				return err
			}
			continue
		}
		if err == fs.SkipDir {
			continue
		}
		if err != nil {
			return err
		}
		fd, err := unix.Openat(dirfd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return &fs.PathError{Op: "open", Path: e.p, Err: err}
		}
		sub := os.NewFile(uintptr(fd), e.p)
		err = walkDirFD(sub, e.p, e.r, fn)
		sub.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// openEntry opens the regular file e for reading, not following a symlink.
func openEntry(e *srcEntry) (*os.File, error) {
	fd, err := unix.Openat(e.dirfd, e.name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: e.p, Err: err}
	}
	return os.NewFile(uintptr(fd), e.p), nil
}

// readlinkEntry reads the target of the symlink e.
func readlinkEntry(e *srcEntry) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(e.dirfd, e.name, buf)
		if err != nil {
			return "", &fs.PathError{Op: "readlink", Path: e.p, Err: err}
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}
