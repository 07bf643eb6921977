package diff

import (
	"bytes"
	"errors"
	"fmt"
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
	buf := make([]byte, 128)
	for {
		n, err := unix.Lgetxattr(path, name, buf)
		switch {
		case errors.Is(err, unix.ERANGE):
			sz, err2 := unix.Lgetxattr(path, name, nil)
			if err2 != nil {
				return "", &os.PathError{Op: "lgetxattr " + name, Path: path, Err: err2}
			}
			buf = make([]byte, sz+16)
			continue
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP):
			return "", nil
		case err != nil:
			return "", &os.PathError{Op: "lgetxattr " + name, Path: path, Err: err}
		}
		return string(buf[:n]), nil
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
