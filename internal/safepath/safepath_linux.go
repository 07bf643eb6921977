// Package safepath resolves paths inside a root directory with chroot
// semantics, the way the kernel's openat2(RESOLVE_IN_ROOT) does: ".." at
// the root stays at the root and an absolute symlink starts again at the
// root, so no name or symlink inside the tree can reach outside it.
//
// Resolution returns directory descriptors; callers then act on one plain
// name inside such a directory with the *at system calls, never on a path
// string. Where openat2 is missing (Linux < 5.6, or a seccomp filter) the
// same semantics come from a walk that opens one component at a time with
// O_NOFOLLOW and reads each symlink itself.
//
// Non-goals: defending against a process that renames directories inside
// the root while a walk is in progress (openat2 detects that case and is
// retried; the fallback walk does not), and lexical checks of names, which
// Clean does and every caller must do first.
package safepath

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// MaxSymlinks is the number of symlinks one resolution may follow, the
// kernel's MAXSYMLINKS. os.Root stops at 8, which rejects legitimate
// chains.
const MaxSymlinks = 40

// ErrEscape is wrapped by Clean's errors for names that leave the root or
// cannot name a file (a NUL byte).
var ErrEscape = errors.New("path escapes the root")

// ErrTooManyLinks is wrapped by resolution errors when a path goes through
// more than MaxSymlinks symlinks (a loop, or a chain longer than the
// kernel allows). It also matches unix.ELOOP.
var ErrTooManyLinks = fmt.Errorf("too many levels of symbolic links (%w)", unix.ELOOP)

// Clean turns an archive or user name into a clean relative path: leading
// slashes are dropped ("/etc/passwd" is "etc/passwd" in the root), "." and
// "" mean the root itself (returned as "."), and ".." may appear only where
// it stays inside the name ("a/../b" is "b"). A name that climbs above its
// start ("../x", "/../x") or holds a NUL byte is an ErrEscape error; no
// file system call is made.
func Clean(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: %q has a NUL byte", ErrEscape, name)
	}
	n := strings.TrimLeft(name, "/")
	if n == "" {
		return ".", nil
	}
	c := path.Clean(n)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%w: %q leaves the root", ErrEscape, name)
	}
	return c, nil
}

// Root is an open root directory. Its methods may be called from several
// goroutines.
type Root struct {
	fd      int
	name    string
	openat2 bool
}

// Option configures Open.
type Option func(*Root)

// WithoutOpenat2 makes the Root use the O_NOFOLLOW walk even where
// openat2 works; tests use it to run the fallback.
func WithoutOpenat2() Option { return func(r *Root) { r.openat2 = false } }

// Open opens dir as a Root. The caller must Close it.
func Open(dir string, opts ...Option) (*Root, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open root", Path: dir, Err: err}
	}
	r := &Root{fd: fd, name: dir, openat2: true}
	for _, o := range opts {
		o(r)
	}
	return r, nil
}

// Close closes the root's descriptor.
func (r *Root) Close() error { return unix.Close(r.fd) }

// Name is the directory Open was given.
func (r *Root) Name() string { return r.name }

// OpenDir resolves name (which Clean has accepted) inside the root,
// following every symlink with chroot semantics, and returns the directory
// it names, opened O_RDONLY. The caller must close it.
func (r *Root) OpenDir(name string) (*os.File, error) {
	fd, err := r.resolve(name, false, 0, nil)
	if err != nil {
		return nil, &os.PathError{Op: "resolve", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), path.Join(r.name, name)), nil
}

// MkdirAll is OpenDir that creates missing directories with mode (before
// umask) on the way, inside the root. A dangling symlink on the way is
// followed: the directories it names are created inside the root.
func (r *Root) MkdirAll(name string, mode uint32) (*os.File, error) {
	return r.MkdirAllFunc(name, mode, nil)
}

// MkdirAllFunc is MkdirAll that calls made, if not nil, right after it
// creates a directory, with the descriptor of the directory holding the
// new one and its name there (for fchownat). Directories that already
// exist are not reported. An error from made stops the walk and is
// returned; the directory stays.
func (r *Root) MkdirAllFunc(name string, mode uint32, made func(dirfd int, name string) error) (*os.File, error) {
	fd, err := r.resolve(name, true, mode, made)
	if err != nil {
		return nil, &os.PathError{Op: "mkdirall", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), path.Join(r.name, name)), nil
}

// resolve returns an O_RDONLY|O_DIRECTORY descriptor of name.
func (r *Root) resolve(name string, create bool, mode uint32, made func(int, string) error) (int, error) {
	if r.openat2 {
		fd, err := r.viaOpenat2(name)
		switch {
		case err == nil:
			return fd, nil
		case errors.Is(err, unix.ENOENT) && create:
			// Fall through to the walk, which creates what is missing.
		case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EPERM), errors.Is(err, unix.ENAMETOOLONG):
			// No openat2 (old kernel, seccomp), or a path longer than
			// PATH_MAX, which the walk handles one name at a time.
		case errors.Is(err, unix.ELOOP):
			return -1, ErrTooManyLinks
		default:
			return -1, err
		}
	}
	return r.walk(name, create, mode, made)
}

func (r *Root) viaOpenat2(name string) (int, error) {
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	var err error
	// EAGAIN means a rename or mount raced the resolution of "..";
	// retry a bounded number of times, as pathrs does.
	for i := 0; i < 128; i++ {
		var fd int
		fd, err = unix.Openat2(r.fd, name, &how)
		if err == nil {
			return fd, nil
		}
		if err != unix.EAGAIN && err != unix.EINTR {
			return -1, err
		}
	}
	return -1, err
}

// walk resolves name one component at a time. It holds one descriptor of
// the current directory and the names that led there from the root; ".."
// goes back by opening that name list again from the root (never by
// opening ".."), and an absolute symlink starts again at the root.
func (r *Root) walk(name string, create bool, mode uint32, made func(int, string) error) (fd int, err error) {
	cur, err := dupCloexec(r.fd)
	if err != nil {
		return -1, err
	}
	defer func() {
		if err != nil {
			unix.Close(cur)
		}
	}()
	var stack []string
	todo := splitPath(name)
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				continue // ".." of the root is the root
			}
			stack = stack[:len(stack)-1]
			next, err := r.reopen(stack)
			if err != nil {
				return -1, err
			}
			unix.Close(cur)
			cur = next
			continue
		}
		next, err := unix.Openat(cur, c, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.ENOENT && create {
			switch err := unix.Mkdirat(cur, c, mode); {
			case err == nil && made != nil:
				if err := made(cur, c); err != nil {
					return -1, err
				}
			case err != nil && err != unix.EEXIST:
				return -1, err
			}
			next, err = unix.Openat(cur, c, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
		if err != nil {
			return -1, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(next, &st); err != nil {
			unix.Close(next)
			return -1, err
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			unix.Close(cur)
			cur = next
			stack = append(stack, c)
		case unix.S_IFLNK:
			links++
			if links > MaxSymlinks {
				unix.Close(next)
				return -1, ErrTooManyLinks
			}
			target, err := readlinkFd(next)
			unix.Close(next)
			if err != nil {
				return -1, err
			}
			if strings.HasPrefix(target, "/") {
				root, err := dupCloexec(r.fd)
				if err != nil {
					return -1, err
				}
				unix.Close(cur)
				cur, stack = root, nil
			}
			todo = append(splitPath(target), todo...)
		default:
			unix.Close(next)
			return -1, unix.ENOTDIR
		}
	}
	// Turn the O_PATH descriptor into one that can be read.
	out, err := unix.Openat(cur, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	unix.Close(cur)
	return out, nil
}

// reopen opens the directory reached from the root through names, which
// are plain directories (no symlink is followed).
func (r *Root) reopen(names []string) (int, error) {
	cur, err := dupCloexec(r.fd)
	if err != nil {
		return -1, err
	}
	for _, n := range names {
		next, err := unix.Openat(cur, n, unix.O_PATH|unix.O_NOFOLLOW|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(cur)
		if err != nil {
			return -1, err
		}
		cur = next
	}
	return cur, nil
}

func dupCloexec(fd int) (int, error) { return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0) }

func splitPath(p string) []string {
	return strings.Split(p, "/")
}

// readlinkFd reads the target of the symlink opened as fd (O_PATH).
func readlinkFd(fd int) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(fd, "", buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// Split returns the parent of a name Clean returned and its last
// component; the root's parent is the root itself (".", ".").
func Split(name string) (dir, base string) {
	if name == "." {
		return ".", "."
	}
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return ".", name
	}
	return name[:i], name[i+1:]
}
