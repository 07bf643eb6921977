package builder

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
)

// Identity is a resolved USER: numeric ids and supplementary groups.
type Identity struct {
	UID, GID uint32
	Groups   []uint32
	Home     string
}

// resolveUser resolves a USER value ("name", "uid", "name:group",
// "uid:gid", ...) against the passwd and group files of an image's root,
// read through fsys (which is rooted at the image's root), the way runc
// does: a numeric user not in passwd is used as is with gid 0; a name that
// is not found is an error. Supplementary groups are those of the group
// file naming the user, unless a group was given.
func resolveUser(fsys fs.FS, spec string) (Identity, error) {
	if spec == "" {
		spec = "root"
	}
	user, group, hasGroup := strings.Cut(spec, ":")
	id := Identity{Home: "/"}
	passwd := readColonFile(fsys, "etc/passwd")
	groups := readColonFile(fsys, "etc/group")
	var name string
	uid, err := strconv.ParseUint(user, 10, 32)
	found := false
	for _, p := range passwd {
		if len(p) < 7 {
			continue
		}
		if (err == nil && p[2] == user) || (err != nil && p[0] == user) {
			u, e1 := strconv.ParseUint(p[2], 10, 32)
			g, e2 := strconv.ParseUint(p[3], 10, 32)
			if e1 != nil || e2 != nil {
				continue
			}
			id.UID, id.GID, id.Home, name, found = uint32(u), uint32(g), p[5], p[0], true
			break
		}
	}
	if !found {
		if err != nil {
			return id, fmt.Errorf("unable to find user %s: no matching entries in passwd file", user)
		}
		id.UID, id.GID = uint32(uid), 0
	}
	if hasGroup {
		gid, gerr := strconv.ParseUint(group, 10, 32)
		gfound := false
		for _, g := range groups {
			if len(g) < 3 {
				continue
			}
			if (gerr == nil && g[2] == group) || (gerr != nil && g[0] == group) {
				v, e := strconv.ParseUint(g[2], 10, 32)
				if e != nil {
					continue
				}
				id.GID, gfound = uint32(v), true
				break
			}
		}
		if !gfound {
			if gerr != nil {
				return id, fmt.Errorf("unable to find group %s: no matching entries in group file", group)
			}
			id.GID = uint32(gid)
		}
		id.Groups = []uint32{id.GID}
		return id, nil
	}
	// The primary group comes first in the supplementary list, as with
	// docker run.
	id.Groups = []uint32{id.GID}
	if name != "" {
		for _, g := range groups {
			if len(g) < 4 {
				continue
			}
			for _, m := range strings.Split(g[3], ",") {
				if m == name {
					if v, e := strconv.ParseUint(g[2], 10, 32); e == nil && uint32(v) != id.GID {
						id.Groups = append(id.Groups, uint32(v))
					}
				}
			}
		}
	}
	return id, nil
}

// readColonFile reads a passwd-style file; a missing file reads as empty.
func readColonFile(fsys fs.FS, name string) [][]string {
	f, err := fsys.Open(name)
	if err != nil {
		return nil
	}
	defer f.Close()
	var rows [][]string
	sc := bufio.NewScanner(io.LimitReader(f, 16<<20))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		rows = append(rows, strings.Split(line, ":"))
	}
	return rows
}
