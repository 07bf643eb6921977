package builder

import (
	"io/fs"
	"os"
	"path"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/internal/safepath"
)

// rootFS is an image root (a merged overlay) as a read-only fs.FS. Names
// are resolved by safepath with chroot semantics, as docker resolves them
// in a container's root: symlinks, absolute ones included, are followed
// inside the root, the last one too except by Lstat and ReadLink. Nothing
// outside the root can be named. The last component is opened with
// O_NOFOLLOW in the directory that holds it.
type rootFS struct{ r *safepath.Root }

var (
	_ fs.StatFS     = rootFS{}
	_ fs.ReadDirFS  = rootFS{}
	_ fs.ReadLinkFS = rootFS{}
)

// parent opens the directory holding name and returns name's last
// component there; follow resolves a symlink as the last component first.
func (f rootFS) parent(op, name string, follow bool) (*os.File, string, error) {
	if !fs.ValidPath(name) {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	n := name
	if follow {
		var err error
		if n, err = f.r.Resolve(name); err != nil {
			return nil, "", &fs.PathError{Op: op, Path: name, Err: unwrapPathError(err)}
		}
	}
	dir, base := safepath.Split(n)
	d, err := f.r.OpenDir(dir)
	if err != nil {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: unwrapPathError(err)}
	}
	return d, base, nil
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

func (f rootFS) Open(name string) (fs.File, error) {
	d, base, err := f.parent("open", name, true)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	fd, err := unix.Openat(int(d.Fd()), base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

func (f rootFS) stat(op, name string, follow bool) (fs.FileInfo, error) {
	d, base, err := f.parent(op, name, follow)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	fi := &statInfo{name: path.Base(name)}
	if err := unix.Fstatat(int(d.Fd()), base, &fi.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	return fi, nil
}

func (f rootFS) Stat(name string) (fs.FileInfo, error)  { return f.stat("stat", name, true) }
func (f rootFS) Lstat(name string) (fs.FileInfo, error) { return f.stat("lstat", name, false) }

func (f rootFS) ReadLink(name string) (string, error) {
	d, base, err := f.parent("readlink", name, false)
	if err != nil {
		return "", err
	}
	defer d.Close()
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(int(d.Fd()), base, buf)
		if err != nil {
			return "", &fs.PathError{Op: "readlink", Path: name, Err: err}
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// ReadDir lists the directory name sorted by file name; each entry's
// info is read with fstatat in that directory, never through a path.
func (f rootFS) ReadDir(name string) ([]fs.DirEntry, error) {
	d, base, err := f.parent("readdir", name, true)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	fd, err := unix.Openat(int(d.Fd()), base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	dir := os.NewFile(uintptr(fd), name)
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	sort.Strings(names)
	out := make([]fs.DirEntry, 0, len(names))
	for _, n := range names {
		fi := &statInfo{name: n}
		if err := unix.Fstatat(fd, n, &fi.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if err == unix.ENOENT {
				continue // removed since it was listed
			}
			return nil, &fs.PathError{Op: "readdir", Path: path.Join(name, n), Err: err}
		}
		out = append(out, fs.FileInfoToDirEntry(fi))
	}
	return out, nil
}

// statInfo is an fs.FileInfo from fstatat; Sys is the *unix.Stat_t.
type statInfo struct {
	name string
	st   unix.Stat_t
}

func (i *statInfo) Name() string       { return i.name }
func (i *statInfo) Size() int64        { return i.st.Size }
func (i *statInfo) ModTime() time.Time { return time.Unix(i.st.Mtim.Unix()) }
func (i *statInfo) IsDir() bool        { return i.st.Mode&unix.S_IFMT == unix.S_IFDIR }
func (i *statInfo) Sys() any           { return &i.st }

func (i *statInfo) Mode() fs.FileMode {
	m := fs.FileMode(i.st.Mode & 0o777)
	switch i.st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		m |= fs.ModeDir
	case unix.S_IFLNK:
		m |= fs.ModeSymlink
	case unix.S_IFIFO:
		m |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		m |= fs.ModeSocket
	case unix.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		m |= fs.ModeDevice
	}
	if i.st.Mode&unix.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if i.st.Mode&unix.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if i.st.Mode&unix.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}
