package diff

import (
	"context"
)

// Kind says what a Change does to its path.
type Kind uint8

const (
	// Add is a new or modified entry, written as it is found.
	Add Kind = iota
	// Delete hides the path and everything below it (a whiteout).
	Delete
)

func (k Kind) String() string {
	switch k {
	case Add:
		return "add"
	case Delete:
		return "delete"
	}
	return "unknown"
}

// File-type bits of st_mode, the same on every Unix.
const (
	sIFMT   = 0o170000
	sIFSOCK = 0o140000
	sIFLNK  = 0o120000
	sIFREG  = 0o100000
	sIFBLK  = 0o060000
	sIFDIR  = 0o040000
	sIFCHR  = 0o020000
	sIFIFO  = 0o010000
)

// Info is the part of lstat(2) that a layer records or a diff compares.
type Info struct {
	Mode      uint32 // st_mode: file type and permission bits
	Uid, Gid  uint32
	Size      int64
	Mtime     int64 // seconds since the epoch, rounded toward -inf
	MtimeNsec int64 // 0..999999999
	Ino       uint64
	Nlink     uint64
	Major     uint32 // of st_rdev
	Minor     uint32
}

// IsDir reports whether the entry is a directory.
func (i Info) IsDir() bool { return i.Mode&sIFMT == sIFDIR }

// IsRegular reports whether the entry is a regular file.
func (i Info) IsRegular() bool { return i.Mode&sIFMT == sIFREG }

// IsWhiteout reports whether the entry is an overlay whiteout: a character
// device 0/0.
func (i Info) IsWhiteout() bool { return i.Mode&sIFMT == sIFCHR && i.Major == 0 && i.Minor == 0 }

// Change is one entry of a change set.
type Change struct {
	Kind Kind
	// Path is the entry's path relative to the root of the change set:
	// "/"-separated, the raw bytes of the on-disk names, never "" or "."
	// and without a trailing slash.
	Path string
	// Source is the on-disk path to read: for Add the entry itself; for a
	// Delete the whiteout node it came from, or "" when the delete was
	// computed (a naive diff) and has no node.
	Source string
	// Info is the lstat of Source; zero when Source is "".
	Info Info
	// Link is the target of a symbolic link.
	Link string
	// Capability is the raw security.capability xattr, "" when unset.
	Capability string
	// Opaque marks an added directory that hides everything the layers
	// below had in it.
	Opaque bool

	// xattrNames lists Source's xattrs, as llistxattr gave them;
	// internalPrefix is the overlay's own xattr namespace when it is not
	// trusted.overlay. (user.overlay. on a userxattr mount).
	xattrNames     []string
	internalPrefix string
	// fuse marks an entry of a fuse-overlayfs upper dir (WithFuse), whose
	// user.overlay.* and user.fuseoverlayfs.* xattrs are its own.
	fuse bool

	// sourceIno is the inode of Source when it is not Info's (a metacopy
	// file whose data is in a lower); 0 means Info.Ino.
	sourceIno uint64
}

// dataIno is the inode the file at Source must have when its data is read.
func (c Change) dataIno() uint64 {
	if c.sourceIno != 0 {
		return c.sourceIno
	}
	return c.Info.Ino
}

// ChangeFunc receives the changes of a walk, one at a time and in order.
// The Change is only valid during the call. Returning an error stops the
// walk and the walk returns that error.
type ChangeFunc func(Change) error

// Source is a change set that can be walked. Implementations read the file
// system as it is during the walk; a walk may be repeated.
type Source interface {
	// Changes calls fn for every change in order (see the package doc).
	Changes(ctx context.Context, fn ChangeFunc) error
}

// Changes walks src and calls fn for each change. It is the call-site
// spelling of src.Changes.
func Changes(ctx context.Context, src Source, fn ChangeFunc) error {
	return src.Changes(ctx, fn)
}

// Warner receives non-fatal notices, such as a skipped socket.
type Warner func(format string, args ...any)
