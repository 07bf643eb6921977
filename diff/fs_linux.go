package diff

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"golang.org/x/sys/unix"
)

// lstat reads the Info of path without following a final symlink.
func lstat(path string) (Info, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return Info{}, &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	return infoFromStat(&st), nil
}

func infoFromStat(st *unix.Stat_t) Info {
	return Info{
		Mode:      st.Mode,
		Uid:       st.Uid,
		Gid:       st.Gid,
		Size:      st.Size,
		Mtime:     st.Mtim.Sec,
		MtimeNsec: st.Mtim.Nsec,
		Ino:       st.Ino,
		Nlink:     uint64(st.Nlink),
		Major:     unix.Major(uint64(st.Rdev)),
		Minor:     unix.Minor(uint64(st.Rdev)),
	}
}

// readDirSorted lists dir's entry names sorted by their raw bytes.
func readDirSorted(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	names, err := f.Readdirnames(-1)
	cerr := f.Close()
	if err != nil {
		return nil, fmt.Errorf("reading directory %s: %w", dir, err)
	}
	if cerr != nil {
		return nil, cerr
	}
	sort.Strings(names)
	return names, nil
}

// xattrs holds the extended attributes of one entry that the engine cares
// about; the rest are never read.
type xattrs struct {
	names []string
}

// listXattrs lists the xattr names of path (not following symlinks).
func listXattrs(path string) (xattrs, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Llistxattr(path, buf)
		switch {
		case errors.Is(err, unix.ERANGE):
			sz, err2 := unix.Llistxattr(path, nil)
			if err2 != nil {
				return xattrs{}, &os.PathError{Op: "llistxattr", Path: path, Err: err2}
			}
			buf = make([]byte, sz+64)
			continue
		case errors.Is(err, unix.ENOTSUP):
			return xattrs{}, nil
		case err != nil:
			return xattrs{}, &os.PathError{Op: "llistxattr", Path: path, Err: err}
		}
		var x xattrs
		for _, name := range bytes.Split(buf[:n], []byte{0}) {
			if len(name) > 0 {
				x.names = append(x.names, string(name))
			}
		}
		return x, nil
	}
}

func (x xattrs) has(name string) bool {
	for _, n := range x.names {
		if n == name {
			return true
		}
	}
	return false
}

// getXattr reads one xattr of path; a missing attribute is ("", nil).
func getXattr(path, name string) (string, error) {
	v, _, err := getXattrOK(path, name)
	return v, err
}

// getXattrOK reads one xattr of path and says whether it is set (an
// xattr may be set to the empty string).
func getXattrOK(path, name string) (string, bool, error) {
	buf := make([]byte, 128)
	for {
		n, err := unix.Lgetxattr(path, name, buf)
		switch {
		case errors.Is(err, unix.ERANGE):
			sz, err2 := unix.Lgetxattr(path, name, nil)
			if err2 != nil {
				return "", false, &os.PathError{Op: "lgetxattr " + name, Path: path, Err: err2}
			}
			buf = make([]byte, sz+16)
			continue
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP):
			return "", false, nil
		case err != nil:
			return "", false, &os.PathError{Op: "lgetxattr " + name, Path: path, Err: err}
		}
		return string(buf[:n]), true, nil
	}
}

// entry reads what a Change needs of the entry at path: its Info, the
// symlink target and the security.capability xattr. xs is returned for
// sources that look at further attributes.
func entry(path string) (Info, string, string, xattrs, error) {
	info, err := lstat(path)
	if err != nil {
		return Info{}, "", "", xattrs{}, err
	}
	var link string
	if info.Mode&sIFMT == sIFLNK {
		if link, err = os.Readlink(path); err != nil {
			return Info{}, "", "", xattrs{}, err
		}
	}
	xs, err := listXattrs(path)
	if err != nil {
		return Info{}, "", "", xattrs{}, err
	}
	var capability string
	if xs.has(xattrCapability) {
		if capability, err = getXattr(path, xattrCapability); err != nil {
			return Info{}, "", "", xattrs{}, err
		}
	}
	return info, link, capability, xs, nil
}

const xattrCapability = "security.capability"

// copyFile writes exactly size bytes of the file at p to w, reading into
// the buffers space lends (see hashingPipe.space) so that the Write of what
// was read costs no copy. A file that ends early or goes on past size is
// ErrSizeChanged.
//
// Growth is seen the way a further read would see it, without making that
// read when there is room: the last read asks for one byte more than is
// left, and getting exactly what was left is taken as end of file (local
// file systems return a short read of a regular file only there; where one
// returns one early, growth at that moment goes unnoticed, as growth after
// the last read always does). Only when the space ends exactly at the
// file's end is a separate one-byte read made.
//
// It uses the raw descriptor rather than an os.File: a regular file gains
// nothing from the runtime poller, and skipping it saves a syscall and a
// finalizer per file.
//
// The file is opened with O_NOFOLLOW (and O_NONBLOCK, which a regular file
// ignores, so that a fifo swapped in cannot block the walk) and must be the
// regular file with inode ino that the walk's lstat saw (ino 0 skips that
// comparison): if a process swapped the path for a symlink or another file
// in between, the error is ErrFileChanged and nothing of the other file is
// written.
func copyFile(w io.Writer, space func() ([]byte, error), p string, size int64, ino uint64) (err error) {
	fd, err := ignoringEINTR(func() (int, error) {
		return unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	})
	if err == unix.ELOOP {
		return fmt.Errorf("%w: %s is now a symlink", ErrFileChanged, p)
	}
	if err != nil {
		return &os.PathError{Op: "open", Path: p, Err: err}
	}
	defer func() {
		if cerr := unix.Close(fd); cerr != nil && err == nil {
			err = &os.PathError{Op: "close", Path: p, Err: cerr}
		}
	}()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "fstat", Path: p, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || (ino != 0 && st.Ino != ino) {
		return fmt.Errorf("%w: %s is no longer the regular file the walk saw", ErrFileChanged, p)
	}
	var n int64
	for {
		buf, err := space()
		if err != nil {
			return err
		}
		rest := size - n
		probe := int64(len(buf)) > rest // the read also looks past the end
		if probe {
			buf = buf[:rest+1]
		}
		m, err := ignoringEINTR(func() (int, error) { return unix.Read(fd, buf) })
		if err != nil {
			return &os.PathError{Op: "read", Path: p, Err: err}
		}
		if int64(m) > rest {
			return fmt.Errorf("%w: more than %d bytes", ErrSizeChanged, size)
		}
		if m == 0 && rest > 0 {
			return fmt.Errorf("%w: %d of %d bytes", ErrSizeChanged, n, size)
		}
		if m > 0 {
			if _, err := w.Write(buf[:m]); err != nil {
				return err
			}
			n += int64(m)
		}
		if n == size && (probe || m == 0) {
			// A read asked for more than was left and got less: end of
			// file.
			return nil
		}
	}
}

// ignoringEINTR retries fn while it fails with EINTR.
func ignoringEINTR(fn func() (int, error)) (int, error) {
	for {
		n, err := fn()
		if err != unix.EINTR {
			return n, err
		}
	}
}
