package diff

import (
	"archive/tar"
	"os/user"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/layercommit/layercommit/compat"
)

// headerRules holds every decision about a tar header in one place. Each
// rule says whose behaviour it copies; FORMAT.md section 2 has the evidence.
type headerRules struct {
	profile compat.Profile
	// seen maps an inode to the first name written for it (moby's
	// SeenFiles). Keyed by st_ino alone, as moby does.
	seen  map[uint64]string
	names nameCache
	// clamp, when set, is the latest mtime written (SOURCE_DATE_EPOCH).
	clamp *int64
	// xattrs picks the xattrs exported (the profile's by default).
	xattrs XattrPolicy
}

// keptXattrs returns the names of c's xattrs that go into its header,
// sorted; Write reads their values and hands them to headers.
func (r *headerRules) keptXattrs(c Change) []string {
	if r.xattrs.capabilityOnly() {
		// Every engine's rule (moby's ReadSecurityXattrToTarHeader, 20.10
		// to 29): security.capability and nothing else. Its value is
		// already in the Change, so no further xattr is read.
		if c.Capability != "" {
			return []string{xattrCapability}
		}
		return nil
	}
	var kept []string
	for _, name := range c.xattrNames {
		switch {
		case strings.HasPrefix(name, OverlayXattrPrefix):
			// overlayfs' own marks (opaque, redirect, metacopy, origin,
			// impure, nlink, upper...): never layer content, whatever the
			// pattern; the layer says opaque with its .wh..wh..opq marker.
		case c.internalPrefix != "" && strings.HasPrefix(name, c.internalPrefix):
			// The same marks in user.overlay.* on a userxattr overlay.
		case c.fuse && (strings.HasPrefix(name, UserOverlayXattrPrefix) || strings.HasPrefix(name, FuseXattrPrefix)):
			// fuse-overlayfs's marks (opaque, origin): it hides both
			// namespaces from the files' users, so none is content.
		case r.xattrs.Match(name):
			kept = append(kept, name)
		}
	}
	if c.Capability != "" && len(c.xattrNames) == 0 && r.xattrs.Match(xattrCapability) {
		// A Change made without a listing (tests, computed changes).
		kept = append(kept, xattrCapability)
	}
	sort.Strings(kept)
	return kept
}

// headers returns the header for c and, for an opaque directory, the
// marker header that must follow it. xattrs holds the values of the names
// keptXattrs chose.
func (r *headerRules) headers(c Change, xattrs map[string]string) (*tar.Header, *tar.Header) {
	i := c.Info
	if c.Kind == Delete && c.Source == "" {
		// A computed delete (naive diff) has no node: a bare whiteout,
		// regular, size 0, mode 0, owner 0, mtime 0 (moby's naive
		// exporter uses the wall clock here, which cannot be reproduced).
		// It is containerd 2.x's whiteout byte for byte: containerd asks
		// for no format and sets atime and ctime to the epoch too, which
		// archive/tar then drops (it keeps them only in a format asked
		// for), giving this same USTAR-compatible header.
		dir, base := path.Split(c.Path)
		return &tar.Header{Typeflag: tar.TypeReg, Name: dir + WhiteoutPrefix + base, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}, nil
	}
	h := &tar.Header{
		Name: c.Path,
		// Permission bits plus setuid, setgid and sticky; the file-type
		// bits are added below when the profile wants them.
		Mode: int64(i.Mode & 0o7777),
		Uid:  int(i.Uid),
		Gid:  int(i.Gid),
		// Whole seconds, rounded toward -inf (tv_sec already is); no
		// atime or ctime is ever written.
		ModTime: time.Unix(r.mtime(i.Mtime), 0),
		// "USTAR if possible, PAX if needed", never GNU.
		Format: tar.FormatPAX,
	}
	if r.profile.LookupNames {
		// Debian's 20.10 looks the ids up in the host's databases; an
		// id with no entry gives an empty name.
		h.Uname, h.Gname = r.names.lookup(i.Uid, i.Gid)
	}
	switch i.Mode & sIFMT {
	case sIFREG:
		h.Typeflag = tar.TypeReg
		h.Size = i.Size
	case sIFDIR:
		h.Typeflag = tar.TypeDir
		h.Name += "/"
	case sIFLNK:
		h.Typeflag = tar.TypeSymlink
		h.Linkname = c.Link
	case sIFCHR:
		h.Typeflag = tar.TypeChar
		h.Devmajor, h.Devminor = int64(i.Major), int64(i.Minor)
	case sIFBLK:
		h.Typeflag = tar.TypeBlock
		h.Devmajor, h.Devminor = int64(i.Major), int64(i.Minor)
	case sIFIFO:
		h.Typeflag = tar.TypeFifo
	}
	if r.profile.TypeBits {
		// moby 20.10-23 fillGo18FileTypeBits.
		h.Mode |= int64(i.Mode & sIFMT)
	}
	for name, v := range xattrs {
		// The xattrs keptXattrs chose (security.capability alone unless
		// --xattrs says more), as SCHILY.xattr. records, which the tar
		// writer sorts by key. security.capability revision 3 (with a
		// root uid) becomes revision 2, cut to its 20 bytes (moby).
		// containerd copies the bytes as they are (RawCapability).
		if name == xattrCapability && !r.profile.RawCapability {
			v = capabilityV2(v)
		}
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords["SCHILY.xattr."+name] = v
	}
	if !i.IsDir() && i.Nlink > 1 {
		// Hard links: the first name of an inode carries the data,
		// later names link to it. This runs before whiteout
		// conversion, on whiteouts too (see below).
		if first, ok := r.seen[i.Ino]; ok {
			h.Typeflag = tar.TypeLink
			h.Linkname = first
			h.Size = 0
		} else {
			r.seen[i.Ino] = c.Path
		}
	}
	if c.Kind == Delete {
		dir, base := path.Split(c.Path)
		h.Name = dir + WhiteoutPrefix + base
		if i.IsWhiteout() {
			// moby's overlay converter: a regular empty file, mode
			// 0600 exactly, keeping owner and mtime and keeping the
			// Linkname the hard-link step gave a whiteout that shares
			// the kernel's whiteout inode.
			h.Mode = 0o600
			if r.profile.WhiteoutModeZero {
				// containers/storage's converter: mode 0.
				h.Mode = 0
			}
			h.Typeflag = tar.TypeReg
			h.Size = 0
		}
		// An aufs whiteout file is written as the file it is.
	}
	if !c.Opaque {
		return h, nil
	}
	// The opaque marker comes right after its directory: a regular empty
	// file with the dir's permission bits (no type, setuid, setgid or
	// sticky bits) and owner, mtime 0 and no format chosen.
	return h, &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     path.Join(h.Name, WhiteoutOpaqueDir),
		Mode:     h.Mode & 0o777,
		Uid:      h.Uid,
		Gid:      h.Gid,
		Uname:    h.Uname,
		Gname:    h.Gname,
	}
}

func (r *headerRules) mtime(t int64) int64 {
	if r.clamp != nil && t > *r.clamp {
		return *r.clamp
	}
	return t
}

// capabilityV2 converts a VFS_CAP_REVISION_3 value to revision 2.
func capabilityV2(v string) string {
	const versionOffset, revision3, revision2, sizeV2 = 3, 3, 2, 20
	if len(v) > versionOffset && v[versionOffset] == revision3 && len(v) >= sizeV2 {
		b := []byte(v[:sizeV2])
		b[versionOffset] = revision2
		return string(b)
	}
	return v
}

// nameCache looks up user and group names once per id.
type nameCache struct {
	users, groups map[uint32]string
}

func (n *nameCache) lookup(uid, gid uint32) (string, string) {
	if n.users == nil {
		n.users, n.groups = map[uint32]string{}, map[uint32]string{}
	}
	u, ok := n.users[uid]
	if !ok {
		if found, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
			u = found.Username
		}
		n.users[uid] = u
	}
	g, ok := n.groups[gid]
	if !ok {
		if found, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10)); err == nil {
			g = found.Name
		}
		n.groups[gid] = g
	}
	return u, g
}
