package safepath

import (
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Resolve follows every symlink in name (which Clean has accepted), the
// last component's included, with chroot semantics, and returns the clean
// name in the root it leads to, as moby's FollowSymlinkInScope does for
// docker build's destinations. Components from the first missing one on
// are kept as they are, so a dangling symlink resolves to the name it
// points at. A non-directory followed by more components is ENOTDIR; more
// than MaxSymlinks symlinks is ErrTooManyLinks.
//
// The result is a name, not a descriptor: callers resolve its parent
// again with OpenDir or MkdirAll and act on its last component with
// O_NOFOLLOW, so a symlink that appears there in between is never
// followed out of the root. Resolve always walks (no openat2), reading
// each component with O_NOFOLLOW.
func (r *Root) Resolve(name string) (string, error) {
	cur, err := dupCloexec(r.fd)
	if err != nil {
		return "", &os.PathError{Op: "resolve", Path: name, Err: err}
	}
	defer func() { unix.Close(cur) }()
	var stack []string
	missing := 0 // the last entries of stack that do not exist
	todo := splitPath(name)
	links := 0
	fail := func(err error) (string, error) { return "", &os.PathError{Op: "resolve", Path: name, Err: err} }
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch {
		case c == "" || c == ".":
			continue
		case c == "..":
			if len(stack) == 0 {
				continue // ".." of the root is the root
			}
			stack = stack[:len(stack)-1]
			if missing > 0 {
				missing--
				if missing > 0 {
					continue
				}
			}
			next, err := r.reopen(stack)
			if err != nil {
				return fail(err)
			}
			unix.Close(cur)
			cur = next
			continue
		case missing > 0:
			stack = append(stack, c)
			missing++
			continue
		}
		var st unix.Stat_t
		err := unix.Fstatat(cur, c, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.ENOENT {
			stack = append(stack, c)
			missing = 1
			continue
		}
		if err != nil {
			return fail(err)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			next, err := unix.Openat(cur, c, unix.O_PATH|unix.O_NOFOLLOW|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return fail(err)
			}
			unix.Close(cur)
			cur = next
			stack = append(stack, c)
		case unix.S_IFLNK:
			links++
			if links > MaxSymlinks {
				return fail(ErrTooManyLinks)
			}
			target, err := readlinkAt(cur, c)
			if err != nil {
				return fail(err)
			}
			if strings.HasPrefix(target, "/") {
				root, err := dupCloexec(r.fd)
				if err != nil {
					return fail(err)
				}
				unix.Close(cur)
				cur, stack = root, nil
			}
			todo = append(splitPath(target), todo...)
		default:
			if len(todo) > 0 {
				return fail(unix.ENOTDIR)
			}
			stack = append(stack, c)
		}
	}
	if len(stack) == 0 {
		return ".", nil
	}
	return strings.Join(stack, "/"), nil
}

// readlinkAt reads the target of the symlink name in the directory dirfd.
func readlinkAt(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}
