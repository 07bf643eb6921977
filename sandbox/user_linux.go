package sandbox

import "github.com/moby/sys/user"

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
// the user, unless a group was given.
func resolveUser(spec string) (identity, error) {
	defaults := user.ExecUser{Uid: 0, Gid: 0, Home: "/"}
	u, err := user.GetExecUserPath(spec, &defaults, "/etc/passwd", "/etc/group")
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
