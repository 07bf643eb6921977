package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/internal/safepath"
)

// Errors of Apply. Each is wrapped with the entry it is about; test with
// errors.Is. All of them are found from the tar header alone, before any
// file system call is made for the entry, except ErrDuplicate's
// companions from the kernel (ENOENT, ENOTDIR, EEXIST, ELOOP), which are
// wrapped as they come.
var (
	// ErrUnsafePath: a name or hard-link target that leaves the root
	// ("../x", "/../x"), holds a NUL byte, or an entry that would change
	// the type of the root directory itself.
	ErrUnsafePath = errors.New("unsafe path in layer")
	// ErrInvalidWhiteout: ".wh.", ".wh..", ".wh...", a whiteout-named
	// directory with entries below it, or a hard link to a whiteout name.
	ErrInvalidWhiteout = errors.New("invalid whiteout in layer")
	// ErrInvalidDevice: a device number the kernel cannot hold (major
	// above 4095 or minor above 1048575, or negative), or a character
	// device 0/0, which an overlay lower would silently read as a
	// whiteout.
	ErrInvalidDevice = errors.New("invalid device in layer")
	// ErrUnsupportedType: a tar entry type that is not a file,
	// directory, link, device or fifo (GNU volume and multi-volume
	// headers, contiguous files, vendor letters), or an aufs hard link.
	ErrUnsupportedType = errors.New("unsupported tar entry type in layer")
	// ErrDuplicate: a second entry for one path ("./a" and "a" are one
	// path). The OCI spec forbids them and Docker's layer store refuses
	// them (tar-split), so Apply does too.
	ErrDuplicate = errors.New("duplicate path in layer")
	// ErrLimit: the layer breaks a limit (see WithLimits).
	ErrLimit = errors.New("layer exceeds a limit")
)

// ErrTooManyLinks is wrapped when a path goes through more than
// safepath.MaxSymlinks (40, as the kernel) symlinks.
var ErrTooManyLinks = safepath.ErrTooManyLinks

// Option configures Apply.
type Option func(*options)

type options struct {
	overlay     bool
	opaqueXattr string
	maxBytes    int64
	maxEntries  int64
	maxDepth    int
	noOpenat2   bool
	skipDevice  func(name string, err error)
	ignoreIDs   bool
}

// chownFailed is the error of a chown, nil when WithUnmappedOwners lets
// an owner the user namespace does not map go.
func (a *applier) chownFailed(err error) error {
	if a.o.ignoreIDs && errors.Is(err, unix.EINVAL) {
		return nil
	}
	return err
}

// WithOverlayForm keeps deletions as overlay wants them in a layer dir
// instead of applying them: ".wh.NAME" becomes a character device 0/0 and
// ".wh..wh..opq" the xattr trusted.overlay.opaque=y on its directory.
func WithOverlayForm() Option { return func(o *options) { o.overlay = true } }

// WithUserXattr marks opaque directories of the overlay form (with
// WithOverlayForm) with user.overlay.opaque, as an overlay mounted with
// userxattr (in a user namespace) reads them, instead of
// trusted.overlay.opaque.
func WithUserXattr() Option {
	return func(o *options) { o.opaqueXattr = diff.UserOverlayXattrPrefix + "opaque" }
}

// WithDeviceSkip skips a character or block device the kernel refuses
// to create (EPERM: a user namespace cannot make device nodes), calling
// warn with its name, as moby does in a user namespace; fifos and
// overlay whiteouts are made as always.
func WithDeviceSkip(warn func(name string, err error)) Option {
	return func(o *options) { o.skipDevice = warn }
}

// WithUnmappedOwners leaves an entry whose owner the user namespace does
// not map (chown fails with EINVAL: a single-id map has uid 0 alone)
// owned by the namespace's root instead of failing, as podman's
// ignore_chown_errors does.
func WithUnmappedOwners() Option { return func(o *options) { o.ignoreIDs = true } }

// WithLimits bounds the uncompressed bytes (file data as the tar declares
// it, holes of sparse entries included, plus whatever follows the end of
// the archive), the number of entries and the depth of paths; zero keeps
// a default.
func WithLimits(maxBytes, maxEntries int64, maxDepth int) Option {
	return func(o *options) {
		if maxBytes > 0 {
			o.maxBytes = maxBytes
		}
		if maxEntries > 0 {
			o.maxEntries = maxEntries
		}
		if maxDepth > 0 {
			o.maxDepth = maxDepth
		}
	}
}

// withoutOpenat2 resolves with the O_NOFOLLOW walk only (tests).
func withoutOpenat2() Option { return func(o *options) { o.noOpenat2 = true } }

// Default limits: generous for real images, small enough to stop a bomb
// before it fills a disk.
const (
	DefaultMaxBytes   = 256 << 30
	DefaultMaxEntries = 10_000_000
	DefaultMaxDepth   = 512
)

// Stats says what Apply did.
type Stats struct {
	Entries int64
	Bytes   int64 // file data as declared, holes included
}

// Apply reads the layer tar r and applies it to the tree at root, which
// must exist. It reads r to its end, past the end-of-archive blocks, so
// that a hash teed from r covers the whole blob. It does not close r.
//
// Every name is resolved inside root with chroot semantics (see
// internal/safepath): ".." and absolute symlinks met on the way stay in the
// root, so nothing outside it is read, written or linked to. Leading
// slashes of names are dropped; names that climb above the root are
// ErrUnsafePath. Symlinks are created as they are written. Hard-link
// targets are paths in the root (absolute ones too, as kaniko writes
// them) and link to the target itself, a symlink included.
//
// Entries replace what is in their way (a directory by a directory keeps
// its contents). A regular file as the parent of a later entry is an
// ENOTDIR error (moby's choice, not umoci's replacement). Whiteouts and
// opaque markers hide only what the tree had before this layer, whatever
// their place in the stream. Hard links need their target in the tree:
// to a file of a lower layer they fail unless root is the merged tree.
//
// Directory modes and times are applied at the end, so a directory of mode
// 0500 can still be filled. Only security.capability and user.* xattrs are
// applied; trusted.* never is.
//
// On error the tree is left part-applied; the caller removes it.
func Apply(ctx context.Context, root string, r io.Reader, opts ...Option) (Stats, error) {
	o := options{opaqueXattr: diff.OpaqueXattr, maxBytes: DefaultMaxBytes, maxEntries: DefaultMaxEntries, maxDepth: DefaultMaxDepth}
	for _, opt := range opts {
		opt(&o)
	}
	var ropts []safepath.Option
	if o.noOpenat2 {
		ropts = append(ropts, safepath.WithoutOpenat2())
	}
	rt, err := safepath.Open(root, ropts...)
	if err != nil {
		return Stats{}, fmt.Errorf("opening unpack root: %w", err)
	}
	defer rt.Close()
	a := &applier{root: rt, o: o, keep: map[string]bool{}, seen: map[string]bool{}, buf: make([]byte, 1<<20)}
	tp := &tap{r: r}
	tr := tar.NewReader(tp)
	for {
		if err := ctx.Err(); err != nil {
			return a.stats, err
		}
		if !a.tookData {
			// What an entry left unread is skipped here rather than in
			// Next, so that what Next reads is its headers alone.
			if _, err := io.CopyBuffer(io.Discard, tr, a.buf); err != nil {
				return a.stats, fmt.Errorf("reading layer: %w", err)
			}
		}
		a.tookData = false
		tp.record()
		h, err := tr.Next()
		a.raw, a.rawStart = tp.recorded()
		if err == io.EOF {
			break
		}
		if err != nil {
			return a.stats, fmt.Errorf("reading layer: %w", err)
		}
		a.stats.Entries++
		if a.stats.Entries > o.maxEntries {
			return a.stats, fmt.Errorf("%w: more than %d entries", ErrLimit, o.maxEntries)
		}
		if err := a.entry(h, tr, tp); err != nil {
			return a.stats, fmt.Errorf("applying %q: %w", h.Name, err)
		}
	}
	// Directory modes and times last, deepest first: creating entries
	// changes a directory's mtime, and a read-only mode would stop them.
	sort.Slice(a.dirs, func(i, j int) bool { return a.dirs[i].name > a.dirs[j].name })
	for _, d := range a.dirs {
		if err := a.dirMeta(d); err != nil {
			return a.stats, fmt.Errorf("applying %q: %w", d.name, err)
		}
	}
	// Drain what follows the archive (padding, or junk) in constant
	// memory, counting it against the byte budget.
	left := o.maxBytes - a.stats.Bytes
	n, err := io.CopyBuffer(io.Discard, io.LimitReader(r, left+1), a.buf)
	if err != nil {
		return a.stats, fmt.Errorf("reading layer: %w", err)
	}
	if n > left {
		return a.stats, fmt.Errorf("%w: more than %d bytes (after the end of the archive)", ErrLimit, o.maxBytes)
	}
	return a.stats, nil
}

// dirMode is the mode and mtime of a directory, applied at the end.
type dirMode struct {
	name  string
	mode  uint32
	mtime unix.Timespec
}

type applier struct {
	root  *safepath.Root
	o     options
	stats Stats
	// keep holds the paths this layer made and their parents: whiteouts
	// and opaque markers leave them alone.
	keep map[string]bool
	seen map[string]bool // every cleaned name, for duplicates
	dirs []dirMode
	buf  []byte
	// raw is what the tar reader read for the current header, from stream
	// offset rawStart (see tap); tookData says the entry's data was read
	// from the stream directly (a sparse entry).
	raw      []byte
	rawStart int64
	tookData bool
}

// entryKind is what a name asks for, decided from the header alone.
type entryKind int

const (
	plainEntry entryKind = iota
	rootEntry
	whiteoutEntry
	opaqueEntry
	skipEntry // aufs metadata (.wh..wh.plnk, .wh..wh.aufs, ...)
)

// check makes every decision that needs only the header: the clean name,
// its kind, the sparse map of a sparse entry (from a.raw), and the errors
// for bad names, types, devices, sparse maps and limits.
func (a *applier) check(h *tar.Header) (string, entryKind, *sparseEntry, error) {
	name, kind, err := a.checkHeader(h)
	if err != nil || kind != plainEntry || h.PAXRecords["GNU.sparse.major"] != "1" || h.PAXRecords["GNU.sparse.minor"] != "0" {
		return name, kind, nil, err
	}
	// archive/tar made a regular file of realsize bytes out of it.
	blocks, data, err := sparseMapBlocks(a.raw, a.rawStart)
	if err != nil {
		return "", 0, nil, err
	}
	sp, err := parseSparse(blocks, h.Size, data)
	if err != nil {
		return "", 0, nil, err
	}
	if sp.data > a.o.maxBytes-a.stats.Bytes {
		return "", 0, nil, fmt.Errorf("%w: more than %d bytes of file data", ErrLimit, a.o.maxBytes)
	}
	return name, kind, sp, nil
}

func (a *applier) checkHeader(h *tar.Header) (string, entryKind, error) {
	name, err := safepath.Clean(h.Name)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %w", ErrUnsafePath, err)
	}
	if name == "." {
		if h.Typeflag != tar.TypeDir {
			return "", 0, fmt.Errorf("%w: refusing to change the type of the root directory (entry type %q)", ErrUnsafePath, h.Typeflag)
		}
		return name, rootEntry, nil
	}
	if strings.Count(name, "/")+1 > a.o.maxDepth {
		return "", 0, fmt.Errorf("%w: deeper than %d", ErrLimit, a.o.maxDepth)
	}
	if a.seen[name] {
		return "", 0, ErrDuplicate
	}
	a.seen[name] = true
	dir, base := safepath.Split(name)
	if dir != "." {
		for _, c := range strings.Split(dir, "/") {
			switch {
			case strings.HasPrefix(c, diff.WhiteoutMetaPrefix):
				return name, skipEntry, nil
			case strings.HasPrefix(c, diff.WhiteoutPrefix):
				return "", 0, fmt.Errorf("%w: %q is a whiteout name and cannot be a directory", ErrInvalidWhiteout, c)
			}
		}
	}
	switch {
	case base == diff.WhiteoutOpaqueDir:
		return name, opaqueEntry, nil
	case strings.HasPrefix(base, diff.WhiteoutMetaPrefix):
		return name, skipEntry, nil
	case strings.HasPrefix(base, diff.WhiteoutPrefix):
		// Only the name counts: a whiteout of any type is a whiteout.
		if t := base[len(diff.WhiteoutPrefix):]; t == "" || t == "." || t == ".." {
			return "", 0, fmt.Errorf("%w: %q names no entry", ErrInvalidWhiteout, base)
		}
		return name, whiteoutEntry, nil
	}
	switch h.Typeflag {
	case tar.TypeDir, tar.TypeSymlink, tar.TypeFifo:
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		if h.Size < 0 {
			return "", 0, fmt.Errorf("%w: negative size %d", tar.ErrHeader, h.Size)
		}
		if h.Size > a.o.maxBytes-a.stats.Bytes && h.PAXRecords["GNU.sparse.major"] == "" {
			return "", 0, fmt.Errorf("%w: more than %d bytes of file data", ErrLimit, a.o.maxBytes)
		}
	case tar.TypeLink:
		target, err := safepath.Clean(h.Linkname)
		if err != nil {
			return "", 0, fmt.Errorf("%w: hard link target: %w", ErrUnsafePath, err)
		}
		if target == "." {
			return "", 0, fmt.Errorf("%w: hard link to the root directory", ErrUnsafePath)
		}
		for _, c := range strings.Split(target, "/") {
			switch {
			case strings.HasPrefix(c, diff.WhiteoutMetaPrefix):
				return "", 0, fmt.Errorf("%w: aufs hard link to %q", ErrUnsupportedType, h.Linkname)
			case strings.HasPrefix(c, diff.WhiteoutPrefix):
				return "", 0, fmt.Errorf("%w: hard link to whiteout name %q", ErrInvalidWhiteout, h.Linkname)
			}
		}
	case tar.TypeChar, tar.TypeBlock:
		if h.Devmajor < 0 || h.Devminor < 0 || h.Devmajor > 0xfff || h.Devminor > 0xfffff {
			return "", 0, fmt.Errorf("%w: device numbers %d/%d out of range", ErrInvalidDevice, h.Devmajor, h.Devminor)
		}
		if h.Typeflag == tar.TypeChar && h.Devmajor == 0 && h.Devminor == 0 {
			return "", 0, fmt.Errorf("%w: character device 0/0 is an overlay whiteout; layers write whiteouts as .wh. names", ErrInvalidDevice)
		}
	default:
		return "", 0, fmt.Errorf("%w: %q", ErrUnsupportedType, h.Typeflag)
	}
	return name, plainEntry, nil
}

// made records that this layer made name (and so its parents).
func (a *applier) made(name string) {
	for name != "." && !a.keep[name] {
		a.keep[name] = true
		name, _ = safepath.Split(name)
	}
}

func (a *applier) entry(h *tar.Header, r io.Reader, tp *tap) error {
	if h.Typeflag == tar.TypeXGlobalHeader {
		return nil // global PAX records: nothing to create
	}
	name, kind, sp, err := a.check(h)
	if err != nil {
		return err
	}
	dir, base := safepath.Split(name)
	switch kind {
	case skipEntry:
		return nil
	case rootEntry:
		d, err := a.root.OpenDir(".")
		if err != nil {
			return err
		}
		defer d.Close()
		return a.fdMeta(int(d.Fd()), ".", h, true)
	case whiteoutEntry:
		return a.whiteout(dir, base[len(diff.WhiteoutPrefix):], h)
	case opaqueEntry:
		return a.opaque(dir)
	}
	parent, err := a.root.MkdirAll(dir, 0o755)
	if err != nil {
		return fmt.Errorf("parent directory: %w", err)
	}
	defer parent.Close()
	pfd := int(parent.Fd())
	a.made(name)
	// Whatever is in the way goes, except a directory replaced by a
	// directory, which keeps its contents. A symlink in the way is
	// removed itself, never followed.
	switch st, err := safepath.LstatAt(pfd, base); {
	case err == nil:
		if !(safepath.IsDir(st) && h.Typeflag == tar.TypeDir) {
			if err := safepath.RemoveAllAt(pfd, base); err != nil {
				return fmt.Errorf("replacing: %w", err)
			}
		}
	case !errors.Is(err, unix.ENOENT):
		return err
	}
	switch h.Typeflag {
	case tar.TypeDir:
		if err := safepath.MkdirAt(pfd, base, 0o700); err != nil {
			return err
		}
		fd, err := safepath.OpenDirAt(pfd, base)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return a.fdMeta(fd, name, h, true)
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		if sp != nil {
			return a.sparseFile(pfd, name, base, h, sp, tp)
		}
		return a.file(pfd, name, base, h, r)
	case tar.TypeSymlink:
		if err := safepath.SymlinkAt(h.Linkname, pfd, base); err != nil {
			return err
		}
		return a.atMeta(pfd, name, base, h, true)
	case tar.TypeLink:
		return a.link(pfd, name, base, h)
	default: // char, block, fifo (check allows no others)
		mode := uint32(unix.S_IFIFO)
		if h.Typeflag == tar.TypeChar {
			mode = unix.S_IFCHR
		} else if h.Typeflag == tar.TypeBlock {
			mode = unix.S_IFBLK
		}
		dev := unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor))
		if err := unix.Mknodat(pfd, base, mode|0o600, int(dev)); err != nil {
			if a.o.skipDevice != nil && mode != unix.S_IFIFO && errors.Is(err, unix.EPERM) {
				a.o.skipDevice(name, err)
				return nil
			}
			return &os.PathError{Op: "mknodat", Path: name, Err: err}
		}
		return a.atMeta(pfd, name, base, h, false)
	}
}

// link makes name a hard link to the entry the header's Linkname names
// in the root: to a symlink itself, never to what it points at.
func (a *applier) link(pfd int, name, base string, h *tar.Header) error {
	target, _ := safepath.Clean(h.Linkname) // check accepted it
	tdir, tbase := safepath.Split(target)
	td, err := a.root.OpenDir(tdir)
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", h.Linkname, err)
	}
	defer td.Close()
	var st unix.Stat_t
	if err := unix.Fstatat(int(td.Fd()), tbase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("hard link target %q: %w", h.Linkname, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("hard link target %q is a directory: %w", h.Linkname, unix.EPERM)
	}
	if err := unix.Linkat(int(td.Fd()), tbase, pfd, base, 0); err != nil {
		return &os.PathError{Op: "linkat", Path: name, Err: err}
	}
	return nil // a link shares its target's metadata
}

// whiteout applies ".wh.<target>" in dir.
func (a *applier) whiteout(dir, target string, h *tar.Header) error {
	full := path.Join(dir, target)
	if !a.o.overlay {
		if a.keep[full] {
			return nil // made by this layer: the whiteout hides only lowers
		}
		d, err := a.root.OpenDir(dir)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil // nothing there to hide
		}
		if err != nil {
			return err
		}
		defer d.Close()
		return safepath.RemoveAllAt(int(d.Fd()), target)
	}
	d, err := a.root.MkdirAll(dir, 0o755)
	if err != nil {
		return fmt.Errorf("parent directory: %w", err)
	}
	defer d.Close()
	if a.keep[full] {
		return nil
	}
	a.made(dir)
	fd := int(d.Fd())
	if err := safepath.RemoveAllAt(fd, target); err != nil {
		return err
	}
	if err := unix.Mknodat(fd, target, unix.S_IFCHR, 0); err != nil {
		return &os.PathError{Op: "mknodat", Path: full, Err: err}
	}
	if err := a.chownFailed(unix.Fchownat(fd, target, h.Uid, h.Gid, unix.AT_SYMLINK_NOFOLLOW)); err != nil {
		return &os.PathError{Op: "fchownat", Path: full, Err: err}
	}
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, safepath.Timespec(h.ModTime)}
	if err := unix.UtimesNanoAt(fd, target, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimensat", Path: full, Err: err}
	}
	return nil
}

// opaque applies "dir/.wh..wh..opq": in a tree, it removes what dir holds
// that this layer did not make; in overlay form, it marks dir opaque.
func (a *applier) opaque(dir string) error {
	d, err := a.root.MkdirAll(dir, 0o755)
	if err != nil {
		return fmt.Errorf("opaque directory: %w", err)
	}
	defer d.Close()
	if a.o.overlay {
		a.made(dir)
		if err := unix.Fsetxattr(int(d.Fd()), a.o.opaqueXattr, []byte("y"), 0); err != nil {
			return fmt.Errorf("marking %s opaque: %w", dir, err)
		}
		return nil
	}
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("reading %s: %w", dir, err)
	}
	for _, n := range names {
		if a.keep[path.Join(dir, n)] {
			continue
		}
		if err := safepath.RemoveAllAt(int(d.Fd()), n); err != nil {
			return err
		}
	}
	return nil
}

// zeros is compared against to find holes.
var zeros [64 << 10]byte

func (a *applier) file(pfd int, name, base string, h *tar.Header, r io.Reader) error {
	f, err := safepath.CreateAt(pfd, base, 0o600)
	if err != nil {
		return err
	}
	err = a.fill(f, h.Size, r)
	if err == nil {
		err = a.fdMeta(int(f.Fd()), name, h, false)
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

// fill writes size bytes of r to f, leaving holes where whole blocks of
// zeros come, so a sparse entry stays sparse.
func (a *applier) fill(f *os.File, size int64, r io.Reader) error {
	var off int64
	for off < size {
		want := min(int64(len(a.buf)), size-off)
		n, err := io.ReadFull(r, a.buf[:want])
		b := a.buf[:n]
		for len(b) > 0 {
			blk := b[:min(len(b), len(zeros))]
			if !bytes.Equal(blk, zeros[:len(blk)]) {
				if _, werr := f.WriteAt(blk, off); werr != nil {
					return werr
				}
			}
			off += int64(len(blk))
			b = b[len(blk):]
		}
		a.stats.Bytes += int64(n)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("reading file data: %w", err)
		}
	}
	return f.Truncate(size)
}

// sparseFile makes the file of a checked sparse entry: each data segment
// is copied from the stream to its offset, then the file is truncated to
// its real size, so holes are left unwritten. The tap then owes the tar
// reader the data it skips.
func (a *applier) sparseFile(pfd int, name, base string, h *tar.Header, sp *sparseEntry, tp *tap) error {
	a.tookData = true
	f, err := safepath.CreateAt(pfd, base, 0o600)
	if err != nil {
		return err
	}
	err = a.fillSparse(f, sp, tp)
	if err == nil {
		err = a.fdMeta(int(f.Fd()), name, h, false)
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

func (a *applier) fillSparse(f *os.File, sp *sparseEntry, tp *tap) error {
	var took int64
	defer func() { tp.owed += took }() // not before: owed bytes read as zeros
	for _, s := range sp.segs {
		for off, end := s.off, s.off+s.len; off < end; {
			n, err := io.ReadFull(tp, a.buf[:min(int64(len(a.buf)), end-off)])
			if n > 0 {
				if _, werr := f.WriteAt(a.buf[:n], off); werr != nil {
					return werr
				}
			}
			off += int64(n)
			a.stats.Bytes += int64(n)
			took += int64(n)
			if err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return fmt.Errorf("reading sparse file data: %w", err)
			}
		}
	}
	return f.Truncate(sp.realsize)
}

// fdMeta sets owner and xattrs of the open file or directory fd, then its
// mode and times (a directory's at the end of Apply).
func (a *applier) fdMeta(fd int, name string, h *tar.Header, isDir bool) error {
	if err := a.chownFailed(unix.Fchown(fd, h.Uid, h.Gid)); err != nil {
		return &os.PathError{Op: "fchown", Path: name, Err: err}
	}
	if err := setXattrs(h, true, func(k string, v []byte) error { return unix.Fsetxattr(fd, k, v, 0) }); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	mode := uint32(h.Mode & 0o7777)
	if isDir {
		a.dirs = append(a.dirs, dirMode{name: name, mode: mode, mtime: safepath.Timespec(h.ModTime)})
		return nil
	}
	// After chown, which clears setuid and setgid.
	if err := unix.Fchmod(fd, mode); err != nil {
		return &os.PathError{Op: "fchmod", Path: name, Err: err}
	}
	return safepath.Futimes(fd, name, safepath.Timespec(h.ModTime))
}

// atMeta sets the metadata of base in the directory pfd, which is a
// symlink or a node Apply just made, without following it.
func (a *applier) atMeta(pfd int, name, base string, h *tar.Header, isLink bool) error {
	if err := a.chownFailed(safepath.LchownAt(pfd, base, h.Uid, h.Gid)); err != nil {
		return err
	}
	if !isLink {
		// The magic link names the directory; base is one component and
		// is not followed.
		p := fmt.Sprintf("/proc/self/fd/%d/%s", pfd, base)
		if err := setXattrs(h, false, func(k string, v []byte) error { return unix.Lsetxattr(p, k, v, 0) }); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		mode := uint32(h.Mode & 0o7777)
		err := unix.Fchmodat(pfd, base, mode, unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.EOPNOTSUPP {
			// No fchmodat2 (Linux < 6.6): base is the node just made.
			err = unix.Fchmodat(pfd, base, mode, 0)
		}
		if err != nil {
			return &os.PathError{Op: "fchmodat", Path: name, Err: err}
		}
	}
	return safepath.UtimesAt(pfd, base, safepath.Timespec(h.ModTime))
}

// setXattrs applies the xattrs of h that a layer may carry:
// security.capability and user.*. trusted.* (overlay's redirect, metacopy
// and opaque among them) and every other namespace are never applied.
// user.* on a node that is not a file or directory is refused by the
// kernel (EPERM) and skipped, as containerd does; so is ENOTSUP for user.*.
func setXattrs(h *tar.Header, fileOrDir bool, set func(string, []byte) error) error {
	keys := make([]string, 0, len(h.PAXRecords))
	for k := range h.PAXRecords {
		if key, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok && (key == "security.capability" || strings.HasPrefix(key, "user.")) {
			keys = append(keys, key)
		}
	}
	sort.Strings(keys)
	for _, key := range keys {
		err := set(key, []byte(h.PAXRecords["SCHILY.xattr."+key]))
		if err != nil && strings.HasPrefix(key, "user.") && (err == unix.ENOTSUP || (err == unix.EPERM && !fileOrDir)) {
			continue
		}
		if err != nil {
			return fmt.Errorf("setting xattr %s: %w", key, err)
		}
	}
	return nil
}

// dirMeta applies a directory's mode and times at the end of Apply. A
// directory removed since (by a later entry) is skipped.
func (a *applier) dirMeta(d dirMode) error {
	var fd int
	if d.name == "." {
		f, err := a.root.OpenDir(".")
		if err != nil {
			return err
		}
		defer f.Close()
		fd = int(f.Fd())
	} else {
		dir, base := safepath.Split(d.name)
		p, err := a.root.OpenDir(dir)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil
		}
		if err != nil {
			return err
		}
		defer p.Close()
		fd, err = safepath.OpenDirAt(int(p.Fd()), base)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			return nil
		}
		if err != nil {
			return err
		}
		defer unix.Close(fd)
	}
	if err := unix.Fchmod(fd, d.mode); err != nil {
		return &os.PathError{Op: "fchmod", Path: d.name, Err: err}
	}
	return safepath.Futimes(fd, d.name, d.mtime)
}
