// Package compat names whose bytes layercommit reproduces. A Profile is
// data: every place that writes bytes a peer also writes (tar headers,
// tar-split, config JSON) asks the profile instead of testing its name.
//
// Non-goals: profiles for engines not tested here; each profile added
// must be tested against the real thing it names.
package compat

import (
	"fmt"
	"sort"
	"strings"
)

// Profile is one peer's set of byte-level choices. The zero value is not
// a valid profile; use Lookup or one of the named variables.
type Profile struct {
	// Name is the spelling used by --compat.
	Name string
	// TypeBits ORs the S_IFMT file-type bits into the tar mode field
	// (moby's fillGo18FileTypeBits, removed in v24).
	TypeBits bool
	// LookupNames fills uname/gname from the host's user and group
	// databases (Debian's 20.10 build); otherwise they are empty.
	LookupNames bool
	// TarSplitTrailingEmpty ends tar-split metadata with an empty segment
	// (tar-split up to v0.11.4, moby up to v24).
	TarSplitTrailingEmpty bool
	// HistoryAuthorFirst orders history keys created, author, created_by
	// (Docker's own type, up to v24); otherwise the OCI order created,
	// created_by, author.
	HistoryAuthorFirst bool
	// LegacyJSONEscapes writes \b and \f in JSON strings as \u0008 and
	// \u000c, as Go 1.21 and older did (Debian's 20.10 is built with
	// Go 1.19).
	LegacyJSONEscapes bool
	// CommitStopSignal lets docker commit --change take STOPSIGNAL
	// (Docker 23 and later).
	CommitStopSignal bool
	// DockerVersion is written as the config's docker_version when the
	// caller gives none; empty means the key is left out.
	DockerVersion string
	// OmitEmptyOnBuild leaves an empty OnBuild out of the config and
	// container_config (Docker 29's api/types/container.Config tags it
	// omitempty; Docker 20.10 to 28 write "OnBuild":null).
	OmitEmptyOnBuild bool
	// Xattrs is the --xattrs list the engine's commit follows when none
	// is given; empty means security.capability. Every Docker from 20.10
	// to 29 exports security.capability alone (moby's
	// ReadSecurityXattrToTarHeader; proven byte for byte by diff's
	// TestDockerCommitConformance and TestDocker29CommitConformance, whose
	// upper dir also holds user.* and trusted.* xattrs).
	Xattrs string
	// NoSparse says the engine cannot apply a layer with PAX sparse
	// entries (GNU sparse 1.0), so --sparse is refused under it. Docker
	// 20.10 and 29 load and run such images (holes written as zeros), so
	// no Docker profile sets it; but their docker save and push of the
	// image fail ("could not verify layer data": tar-split rebuilds the
	// layer from the dense file). See cmd/layercommit
	// TestSparseDockerLoadRun.
	NoSparse bool
	// WhiteoutModeZero writes a whiteout with mode 0 (containers/storage's
	// overlay converter) instead of moby's 0600.
	WhiteoutModeZero bool
	// OpaqueOnlyOverLower writes an opaque directory's marker only when
	// the directory exists (as anything but a whiteout) in a lower layer,
	// as containers/storage's overlay converter checks its read-only
	// layers; the overlay source applies it (containersstorage.Changes).
	OpaqueOnlyOverLower bool
	// SparseBreaksSave says the engine loads and runs a layer with sparse
	// entries but cannot save or push the image afterwards: docker save
	// rebuilds the layer from tar-split's record and the applied file,
	// and tar-split recorded the entry's logical (dense) bytes, read
	// through archive/tar's sparse reader, not the sparse map and data
	// fragments the layer holds, so the rebuilt tar fails the diffID
	// ("could not verify layer data"). True of every Docker from 20.10 to
	// 29 (vbatts/tar-split asm.NewInputTarStream and
	// NewOutputTarStream).
	SparseBreaksSave bool

	// WalkingDiff says the engine finds a layer's changes by comparing
	// two whole trees, the merged lowers and the container's merged view
	// (containerd's walking differ: plugins/diff/walking Compare, over
	// continuity's fs.Changes double walk), rather than by reading the
	// upper dir: diff.Walking and diff.Snapshot are its sources, and a
	// caller picking a source for the profile picks them.
	WalkingDiff bool
	// RawCapability writes security.capability as the file has it,
	// without moby's revision 3 to revision 2 conversion (containerd's
	// ChangeWriter copies getxattr's bytes). It shows where a revision 3
	// value names a root uid other than 0 (a file capability set in a
	// user namespace); the kernel itself stores one naming uid 0 as
	// revision 2.
	RawCapability bool
	// StdlibGzip compresses gzip layers with Go's compress/gzip (a bare
	// gzip.NewWriter: default level, no name, no mtime, one stream) as
	// containerd's pkg/archive/compression.CompressStream does, instead of
	// the parallel pgzip blocks of the other profiles.
	StdlibGzip bool
}

// DefaultXattrs is the xattr list of a profile that names none.
const DefaultXattrs = "security.capability"

// XattrList is p's Xattrs, DefaultXattrs when empty.
func (p Profile) XattrList() string {
	if p.Xattrs == "" {
		return DefaultXattrs
	}
	return p.Xattrs
}

var (
	// Docker2010 is Docker 20.10 as Debian packages it.
	Docker2010 = Profile{
		Name:                  "docker-20.10",
		TypeBits:              true,
		LookupNames:           true,
		TarSplitTrailingEmpty: true,
		HistoryAuthorFirst:    true,
		LegacyJSONEscapes:     true,
		DockerVersion:         "20.10.24+dfsg1",
		SparseBreaksSave:      true,
	}
	// Docker24 is Docker 24 to 28 with a graphdriver (moby/go-archive):
	// its layer bytes are also Docker 29's; its commit config is 24-28's
	// (pass their docker_version with --docker-version: it differs per
	// release).
	Docker24 = Profile{
		Name:             "docker-24",
		CommitStopSignal: true,
		SparseBreaksSave: true,
	}
	// Docker29 is Docker 29 with a graphdriver: Docker24's layer bytes, and
	// the commit config of moby v2 (no docker_version, no empty OnBuild).
	Docker29 = Profile{
		Name:             "docker-29",
		CommitStopSignal: true,
		OmitEmptyOnBuild: true,
		SparseBreaksSave: true,
	}
	// Podman4 is containers-storage 1.43's overlay Diff as podman 4.3 and
	// buildah 1.28 commit it: file-type bits in the mode, no user or group
	// names, whiteouts of mode 0, opaque markers only over a lower dir.
	// Proven by containersstorage's TestPodmanCommitConformance.
	Podman4 = Profile{
		Name:                "podman-4",
		TypeBits:            true,
		WhiteoutModeZero:    true,
		OpaqueOnlyOverLower: true,
		// containers/storage exports user.* xattrs besides
		// security.capability (ReadUserXattrToTarHeader).
		Xattrs: "security.capability,user.*",
	}
	// Containerd is containerd 2.x's walking differ (Docker 29's
	// containerd image store, nerdctl, BuildKit, ctr snapshots diff): a
	// whole-tree comparison (diff.Snapshot), headers from archive/tar's
	// FileInfoHeader without name lookups (pkg/archive/tarheader
	// FileInfoHeaderNoLookups: permission, setuid, setgid and sticky
	// bits in the mode, no uname or gname), PAX format with mtimes
	// truncated to the second, whiteouts regular, mode 0, owner 0, at
	// the epoch, security.capability alone and raw, sockets skipped, gzip
	// by compress/gzip. Proven byte for byte (blob and tar) against
	// containerd 2.3.3's ctr snapshots diff by diff's
	// TestContainerdWalkingConformance, and against docker commit of
	// Docker 29.7.1 on its containerd store by
	// TestDocker29ContainerdStoreCommit.
	//
	// Containerd 1.6 (Debian's 1.6.20, checked by the same test) writes
	// the same tar but for the whiteouts' mtime: the time of the diff,
	// rounded to the second, the same for every whiteout of a layer (so
	// a 1.6 layer with a whiteout is not reproducible). A 1.6 layer
	// without whiteouts is this profile's, blob included. 1.6's ctr
	// snapshots diff also ignores SOURCE_DATE_EPOCH, which 2.x applies
	// as diff.WithMtimeClamp does (whiteouts staying at the epoch).
	Containerd = Profile{
		Name:          "containerd",
		WalkingDiff:   true,
		RawCapability: true,
		StdlibGzip:    true,
	}
	// Default is the profile used when none is named.
	Default = Docker24
)

var byName = map[string]Profile{
	Docker2010.Name: Docker2010,
	Docker24.Name:   Docker24,
	Docker29.Name:   Docker29,
	Podman4.Name:    Podman4,
	Containerd.Name: Containerd,
}

// Lookup returns the profile spelled name, or an error listing the known ones.
func Lookup(name string) (Profile, error) {
	if name == "" {
		return Default, nil
	}
	p, ok := byName[name]
	if !ok {
		return Profile{}, fmt.Errorf("unknown compat profile %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	return p, nil
}

// Names lists the known profile names, sorted.
func Names() []string {
	var n []string
	for k := range byName {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}
