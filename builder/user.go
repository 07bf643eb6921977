package builder

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"

	"github.com/moby/sys/user"
)

// Identity is the owner COPY --chown and ADD --chown give to what they
// write. (USER for RUN is resolved inside the sandbox, package sandbox.)
type Identity struct {
	UID, GID uint32
}

// chownIdentity resolves --chown as the legacy builder does: a lone user
// is also taken as the group; a number is used as is; a name is looked
// up in the image's own passwd or group file (read through fsys, which
// is rooted at the image's root) with github.com/moby/sys/user's parser,
// as moby does.
func chownIdentity(fsys fs.FS, spec string) (Identity, error) {
	name, group, ok := strings.Cut(spec, ":")
	if !ok {
		group = name
	}
	uid, err := lookupID(fsys, "etc/passwd", name, func(r io.Reader) ([]int, error) {
		us, err := user.ParsePasswdFilter(r, func(u user.User) bool { return u.Name == name })
		ids := make([]int, len(us))
		for i, u := range us {
			ids[i] = u.Uid
		}
		return ids, err
	})
	if err != nil {
		return Identity{}, fmt.Errorf("unable to convert uid/gid chown string to host mapping: can't find uid for user %s: %w", name, err)
	}
	gid, err := lookupID(fsys, "etc/group", group, func(r io.Reader) ([]int, error) {
		gs, err := user.ParseGroupFilter(r, func(g user.Group) bool { return g.Name == group })
		ids := make([]int, len(gs))
		for i, g := range gs {
			ids[i] = g.Gid
		}
		return ids, err
	})
	if err != nil {
		return Identity{}, fmt.Errorf("unable to convert uid/gid chown string to host mapping: can't find gid for group %s: %w", group, err)
	}
	return Identity{UID: uid, GID: gid}, nil
}

// errNoEntry is a --chown name that the image's passwd or group file
// does not hold (or that has no such file).
var errNoEntry = errors.New("no such user or group in the image")

// lookupID returns the id a number stands for, or the first id parse
// finds for a name in file.
func lookupID(fsys fs.FS, file, name string, parse func(io.Reader) ([]int, error)) (uint32, error) {
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return uint32(n), nil
	}
	f, err := fsys.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, errNoEntry
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	ids, err := parse(io.LimitReader(f, 16<<20))
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", file, err)
	}
	if len(ids) == 0 {
		return 0, errNoEntry
	}
	if ids[0] < 0 {
		return 0, fmt.Errorf("%s: negative id for %s", file, name)
	}
	return uint32(ids[0]), nil
}
