package sandbox

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/moby/sys/user"
	"golang.org/x/sys/unix"
)

// identity is a resolved USER.
type identity struct {
	UID, GID uint32
	Groups   []uint32 // the primary group first, as docker run sets them
	Home     string
}

// resolveUser resolves a USER value against /etc/passwd and /etc/group
// of the current root (the sandbox's, after pivot_root) with runc's
// rules (github.com/moby/sys/user): an empty USER is uid 0 and gid 0, a
// numeric user or group needs no entry (gid 0 then, as with Docker), a
// missing passwd or group file reads as empty, a name that is not found
// is an error. Supplementary groups are those of the group file naming
// the user, unless a group was given. Either file must be a regular file
// (runc would block forever on a FIFO there; we refuse it).
func resolveUser(spec string) (identity, error) {
	passwd, err := openIDFile("/etc/passwd")
	if err != nil {
		return identity{}, err
	}
	if passwd != nil {
		defer passwd.Close()
	}
	group, err := openIDFile("/etc/group")
	if err != nil {
		return identity{}, err
	}
	if group != nil {
		defer group.Close()
	}
	defaults := user.ExecUser{Uid: 0, Gid: 0, Home: "/"}
	u, err := user.GetExecUser(spec, &defaults, reader(passwd), reader(group))
	if err != nil {
		// The library's message is Docker's: "unable to find user x:
		// no matching entries in passwd file".
		return identity{}, err
	}
	id := identity{UID: uint32(u.Uid), GID: uint32(u.Gid), Groups: []uint32{uint32(u.Gid)}, Home: u.Home}
	for _, g := range u.Sgids {
		if uint32(g) != id.GID {
			id.Groups = append(id.Groups, uint32(g))
		}
	}
	if id.Home == "" {
		id.Home = "/"
	}
	return id, nil
}

// openIDFile opens a passwd or group file of the image without blocking
// (O_NONBLOCK, so a FIFO planted there does not hang the open) and
// checks that it is a regular file. A missing file is (nil, nil).
func openIDFile(name string) (*os.File, error) {
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("opening the image's %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("reading the image's %s: %w", name, err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("reading the image's %s: not a regular file (%s)", name, st.Mode().Type()&fs.ModeType)
	}
	return f, nil
}

// reader returns f as the io.Reader GetExecUser wants, nil for a
// missing file (which it reads as empty), limited to 16 MiB.
func reader(f *os.File) io.Reader {
	if f == nil {
		return nil
	}
	return io.LimitReader(f, 16<<20)
}
