package builder

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"syscall"

	"github.com/moby/sys/user"
)

// Identity is the owner COPY --chown and ADD --chown give to what they
// write. (USER for RUN is resolved inside the sandbox, package sandbox.)
type Identity struct {
	UID, GID uint32
}

// chownIdentity resolves --chown as BuildKit's file op does
// (llb.WithUser, then readUser in the solver): a number is the uid and,
// without a group, the gid too; a user name takes uid and gid from the
// image's own passwd (read through fsys, rooted at the image's root, with
// github.com/moby/sys/user's parser), and a name it does not hold is 0:0,
// as BuildKit leaves it; a group (after ":") sets the gid, by number or
// by name from the image's group file, a name it does not hold leaving
// the gid as the user gave it. "user:" is "user".
func chownIdentity(fsys fs.FS, spec string) (Identity, error) {
	name, group, _ := strings.Cut(spec, ":")
	var id Identity
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		id = Identity{UID: uint32(n), GID: uint32(n)}
	} else {
		us, err := readIDFile(fsys, "etc/passwd", func(r io.Reader) ([]user.User, error) {
			return user.ParsePasswdFilter(r, func(u user.User) bool { return u.Name == name })
		})
		if err != nil {
			return Identity{}, err
		}
		if len(us) > 0 {
			if us[0].Uid < 0 || us[0].Gid < 0 {
				return Identity{}, fmt.Errorf("etc/passwd: negative id for %s", name)
			}
			id = Identity{UID: uint32(us[0].Uid), GID: uint32(us[0].Gid)}
		}
	}
	if group == "" {
		return id, nil
	}
	if n, err := strconv.ParseUint(group, 10, 32); err == nil {
		id.GID = uint32(n)
		return id, nil
	}
	gs, err := readIDFile(fsys, "etc/group", func(r io.Reader) ([]user.Group, error) {
		return user.ParseGroupFilter(r, func(g user.Group) bool { return g.Name == group })
	})
	if err != nil {
		return Identity{}, err
	}
	if len(gs) > 0 {
		if gs[0].Gid < 0 {
			return Identity{}, fmt.Errorf("etc/group: negative id for %s", group)
		}
		id.GID = uint32(gs[0].Gid)
	}
	return id, nil
}

// chownByName reports whether --chown names a user or group (not only
// numbers): BuildKit refuses that with --link, which has no base to read
// passwd from.
func chownByName(spec string) bool {
	if spec == "" {
		return false
	}
	name, group, _ := strings.Cut(spec, ":")
	for _, s := range []string{name, group} {
		if _, err := strconv.ParseUint(s, 10, 32); s != "" && err != nil {
			return true
		}
	}
	return false
}

// readIDFile parses the image's passwd or group file; a missing file (or
// one under a non-directory) holds no one, as BuildKit treats it.
func readIDFile[T any](fsys fs.FS, file string, parse func(io.Reader) ([]T, error)) ([]T, error) {
	f, err := fsys.Open(file)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	defer f.Close()
	v, err := parse(io.LimitReader(f, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	return v, nil
}
