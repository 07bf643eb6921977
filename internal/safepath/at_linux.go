package safepath

import (
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The *at toolkit: the one set of file operations relative to an open
// directory that COPY/ADD (builder) and layer application (unpack) use.
// base is always one name in dirfd, already resolved inside a root; none
// of these follows a symlink named base, and errors are *os.PathError
// naming base.

func pathErr(op, name string, err error) error { return &os.PathError{Op: op, Path: name, Err: err} }

// LstatAt stats base in dirfd without following it.
func LstatAt(dirfd int, base string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err != nil {
		return st, pathErr("fstatat", base, err)
	}
	return st, nil
}

// IsDir reports whether st is a directory's.
func IsDir(st unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFDIR }

// CreateAt creates base in dirfd as a new regular file (O_EXCL: never an
// existing one, never through a symlink), open for writing.
func CreateAt(dirfd int, base string, perm uint32) (*os.File, error) {
	fd, err := unix.Openat(dirfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return nil, pathErr("openat", base, err)
	}
	return os.NewFile(uintptr(fd), base), nil
}

// OpenDirAt opens the directory base in dirfd for reading (and fchmod,
// fchown, futimens); a symlink there fails with ELOOP.
func OpenDirAt(dirfd int, base string) (int, error) {
	fd, err := unix.Openat(dirfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, pathErr("openat", base, err)
	}
	return fd, nil
}

// MkdirAt makes the directory base in dirfd; one already there is fine.
func MkdirAt(dirfd int, base string, perm uint32) error {
	if err := unix.Mkdirat(dirfd, base, perm); err != nil && err != unix.EEXIST {
		return pathErr("mkdirat", base, err)
	}
	return nil
}

// RemoveNonDirAt removes base from dirfd unless it is a directory (which
// a create that follows then fails on). A missing base is fine.
func RemoveNonDirAt(dirfd int, base string) error {
	st, err := LstatAt(dirfd, base)
	if err != nil || IsDir(st) {
		return nil
	}
	if err := unix.Unlinkat(dirfd, base, 0); err != nil && err != unix.ENOENT {
		return pathErr("unlinkat", base, err)
	}
	return nil
}

// EnsureDirAt makes base in dirfd a directory: one that exists is kept, a
// non-directory (a symlink included) is replaced.
func EnsureDirAt(dirfd int, base string, perm uint32) error {
	var st unix.Stat_t
	switch err := unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); {
	case err == nil && IsDir(st):
		return nil
	case err == nil:
		if err := unix.Unlinkat(dirfd, base, 0); err != nil {
			return pathErr("unlinkat", base, err)
		}
	case err != unix.ENOENT:
		return pathErr("fstatat", base, err)
	}
	return MkdirAt(dirfd, base, perm)
}

// SymlinkAt makes base in dirfd a symlink to target.
func SymlinkAt(target string, dirfd int, base string) error {
	if err := unix.Symlinkat(target, dirfd, base); err != nil {
		return pathErr("symlinkat", base, err)
	}
	return nil
}

// LchownAt sets the owner of base in dirfd itself (a symlink's own).
func LchownAt(dirfd int, base string, uid, gid int) error {
	if err := unix.Fchownat(dirfd, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return pathErr("fchownat", base, err)
	}
	return nil
}

// Timespec is t as the kernel takes it.
func Timespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

// UtimesAt sets base's atime and mtime in dirfd to ts, not following a
// symlink.
func UtimesAt(dirfd int, base string, ts unix.Timespec) error {
	if err := unix.UtimesNanoAt(dirfd, base, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return pathErr("utimensat", base, err)
	}
	return nil
}

// Futimes sets the open fd's atime and mtime to ts; name is for errors.
func Futimes(fd int, name string, ts unix.Timespec) error {
	if err := unix.UtimesNanoAt(fd, "", []unix.Timespec{ts, ts}, unix.AT_EMPTY_PATH); err != nil {
		return pathErr("utimensat", name, err)
	}
	return nil
}

// WriteFileAt replaces a non-directory base in dirfd by a new file with
// r's content (copied through buf, which may be nil), then calls attrs
// on the open file (owner and mode, in the caller's order) and sets its
// mtime (FinishFile).
func WriteFileAt(dirfd int, base string, r io.Reader, buf []byte, attrs func(*os.File) error, mtime time.Time) error {
	if err := RemoveNonDirAt(dirfd, base); err != nil {
		return err
	}
	f, err := CreateAt(dirfd, base, 0o600)
	if err != nil {
		return err
	}
	return FinishFile(f, r, buf, attrs, mtime)
}

// FinishFile writes r's content (through buf, which may be nil) into
// the new file f, calls attrs on it, sets its mtime through the
// descriptor (writing sets it, closing does not) and closes it.
func FinishFile(f *os.File, r io.Reader, buf []byte, attrs func(*os.File) error, mtime time.Time) error {
	_, err := io.CopyBuffer(f, r, buf)
	if err == nil {
		err = attrs(f)
	}
	if err == nil {
		err = Futimes(int(f.Fd()), f.Name(), Timespec(mtime))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// DirCache opens directories below a top directory with O_NOFOLLOW, one
// component at a time, and keeps the last one open: a walk visits one
// directory's entries one after another, so each directory is resolved
// once, not once per entry.
type DirCache struct {
	top  int
	name string
	fd   int // -1, or the open directory name
}

// NewDirCache caches directories below top, which the caller keeps open
// and closes after Close.
func NewDirCache(top int) *DirCache { return &DirCache{top: top, fd: -1} }

// Open returns a descriptor of the directory name (a clean relative path)
// below top, valid until the next Open or Close. A symlink on the way
// fails with ELOOP.
func (dc *DirCache) Open(name string) (int, error) {
	if name == "." {
		return dc.top, nil
	}
	if dc.name == name && dc.fd >= 0 {
		return dc.fd, nil
	}
	dc.Close()
	cur := dc.top
	for _, n := range strings.Split(name, "/") {
		next, err := unix.Openat(cur, n, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if cur != dc.top {
			unix.Close(cur)
		}
		if err != nil {
			return -1, pathErr("openat", name, err)
		}
		cur = next
	}
	dc.name, dc.fd = name, cur
	return cur, nil
}

// Close closes the cached directory (not top).
func (dc *DirCache) Close() {
	if dc.fd >= 0 && dc.fd != dc.top {
		unix.Close(dc.fd)
	}
	dc.name, dc.fd = "", -1
}

// RemoveAllAt removes name in the directory dirfd and, if it is a
// directory, everything below it. No symlink is followed: a symlink is
// removed itself. A missing name is not an error.
func RemoveAllAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return &os.PathError{Op: "unlinkat", Path: name, Err: err}
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ENOENT {
			return nil
		}
		return &os.PathError{Op: "openat", Path: name, Err: err}
	}
	d := os.NewFile(uintptr(fd), name)
	for {
		names, err := d.Readdirnames(1024)
		for _, n := range names {
			if err := RemoveAllAt(fd, n); err != nil {
				d.Close()
				return err
			}
		}
		if err != nil || len(names) == 0 {
			break
		}
	}
	d.Close()
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && err != unix.ENOENT {
		return &os.PathError{Op: "rmdir", Path: name, Err: err}
	}
	return nil
}
