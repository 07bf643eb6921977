package unpack

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix     = ".wh."
	whiteoutMetaPrefix = ".wh..wh."
	whiteoutOpaqueDir  = ".wh..wh..opq"
)

// Option configures Apply.
type Option func(*options)

type options struct {
	overlay     bool
	opaqueXattr string
	maxBytes    int64
	maxEntries  int64
	maxDepth    int
}

// WithOverlayForm keeps deletions as overlay wants them in a layer dir
// instead of applying them: ".wh.NAME" becomes a character device 0/0 and
// ".wh..wh..opq" the xattr trusted.overlay.opaque=y on its directory.
func WithOverlayForm() Option { return func(o *options) { o.overlay = true } }

// WithLimits bounds the uncompressed bytes of file data, the number of
// entries and the depth of paths; zero keeps a default.
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

// Default limits: generous for real images, small enough to stop a bomb.
const (
	DefaultMaxBytes   = 1 << 40
	DefaultMaxEntries = 10_000_000
	DefaultMaxDepth   = 512
)

// Stats says what Apply did.
type Stats struct {
	Entries int64
	Bytes   int64 // file data written
}

// Apply reads the layer tar r and applies it to the tree at root, which
// must exist. Entries whose names leave the root, link outside it or break
// a limit are errors; on error the tree is left part-applied.
func Apply(ctx context.Context, root string, r io.Reader, opts ...Option) (Stats, error) {
	o := options{opaqueXattr: "trusted.overlay.opaque", maxBytes: DefaultMaxBytes, maxEntries: DefaultMaxEntries, maxDepth: DefaultMaxDepth}
	for _, opt := range opts {
		opt(&o)
	}
	rt, err := os.OpenRoot(root)
	if err != nil {
		return Stats{}, fmt.Errorf("opening unpack root: %w", err)
	}
	defer rt.Close()
	a := &applier{root: rt, o: o, created: map[string]bool{}, buf: make([]byte, 1<<20)}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return a.stats, err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return a.stats, fmt.Errorf("reading layer: %w", err)
		}
		a.stats.Entries++
		if a.stats.Entries > o.maxEntries {
			return a.stats, fmt.Errorf("layer has more than %d entries", o.maxEntries)
		}
		if err := a.entry(h, tr); err != nil {
			return a.stats, err
		}
	}
	// Directory times last, deepest first, since creating entries in a
	// directory changes its mtime.
	sort.Slice(a.dirTimes, func(i, j int) bool { return a.dirTimes[i].name > a.dirTimes[j].name })
	for _, d := range a.dirTimes {
		if err := a.setTimes(d.name, d.mtime); err != nil {
			return a.stats, err
		}
	}
	return a.stats, nil
}

type dirTime struct {
	name  string
	mtime unix.Timespec
}

type applier struct {
	root     *os.Root
	o        options
	stats    Stats
	created  map[string]bool // paths this layer made (opaque keeps them)
	dirTimes []dirTime
	buf      []byte
}

// ErrUnsafePath is wrapped by errors for names that leave the root or are
// otherwise not a plain relative path.
var ErrUnsafePath = errors.New("unsafe path in layer")

// cleanName turns a tar name into a clean relative path, or an error.
func (a *applier) cleanName(name string) (string, error) {
	if strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("%w: %q has a NUL byte", ErrUnsafePath, name)
	}
	n := strings.TrimSuffix(name, "/")
	for strings.HasPrefix(n, "./") {
		n = n[2:]
	}
	if n == "" || n == "." {
		return ".", nil
	}
	if path.IsAbs(n) {
		return "", fmt.Errorf("%w: %q is absolute", ErrUnsafePath, name)
	}
	c := path.Clean(n)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%w: %q leaves the root", ErrUnsafePath, name)
	}
	if strings.Count(c, "/")+1 > a.o.maxDepth {
		return "", fmt.Errorf("%w: %q is deeper than %d", ErrUnsafePath, name, a.o.maxDepth)
	}
	return c, nil
}

func (a *applier) entry(h *tar.Header, r io.Reader) error {
	name, err := a.cleanName(h.Name)
	if err != nil {
		return err
	}
	if name == "." {
		// The root's own entry: only its metadata.
		if h.Typeflag != tar.TypeDir {
			return fmt.Errorf("%w: root entry %q is not a directory", ErrUnsafePath, h.Name)
		}
		return a.meta(".", h)
	}
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	if strings.HasPrefix(base, whiteoutPrefix) {
		return a.whiteout(dir, base, h)
	}
	if err := a.mkParents(dir); err != nil {
		return err
	}
	// Whatever is in the way goes, except a directory replaced by a
	// directory, which keeps its contents.
	if fi, err := a.root.Lstat(name); err == nil {
		if !(fi.IsDir() && h.Typeflag == tar.TypeDir) {
			if err := a.root.RemoveAll(name); err != nil {
				return fmt.Errorf("replacing %s: %w", name, err)
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("applying %s: %w", name, err)
	}
	a.created[name] = true
	switch h.Typeflag {
	case tar.TypeDir:
		if err := a.root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("creating %s: %w", name, err)
		}
	case tar.TypeReg, tar.TypeRegA:
		if err := a.file(name, h, r); err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := a.root.Symlink(h.Linkname, name); err != nil {
			return fmt.Errorf("creating symlink %s: %w", name, err)
		}
	case tar.TypeLink:
		target, err := a.cleanName(h.Linkname)
		if err != nil || target == "." {
			return fmt.Errorf("%w: hard link %s to %q", ErrUnsafePath, name, h.Linkname)
		}
		if fi, err := a.root.Lstat(target); err != nil {
			return fmt.Errorf("hard link %s: target %s: %w", name, target, err)
		} else if fi.IsDir() {
			return fmt.Errorf("%w: hard link %s to directory %s", ErrUnsafePath, name, target)
		}
		if err := a.root.Link(target, name); err != nil {
			return fmt.Errorf("creating hard link %s: %w", name, err)
		}
		return nil // a link shares its target's metadata
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := uint32(unix.S_IFIFO)
		if h.Typeflag == tar.TypeChar {
			mode = unix.S_IFCHR
		} else if h.Typeflag == tar.TypeBlock {
			mode = unix.S_IFBLK
		}
		if h.Devmajor < 0 || h.Devminor < 0 || h.Devmajor > 0xfff || h.Devminor > 0xfffff {
			return fmt.Errorf("%w: %s has device numbers %d/%d out of range", ErrUnsafePath, name, h.Devmajor, h.Devminor)
		}
		if err := a.at(dir, func(fd int) error {
			return unix.Mknodat(fd, base, mode|0o600, int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor))))
		}); err != nil {
			return fmt.Errorf("creating %s: %w", name, err)
		}
	default:
		return fmt.Errorf("%s: unsupported tar entry type %q", name, h.Typeflag)
	}
	return a.meta(name, h)
}

// whiteout applies ".wh.NAME" and ".wh..wh..opq" in dir.
func (a *applier) whiteout(dir, base string, h *tar.Header) error {
	switch {
	case base == whiteoutOpaqueDir:
		if err := a.mkParents(dir); err != nil {
			return err
		}
		if a.o.overlay {
			return a.at(dir, func(fd int) error {
				return unix.Fsetxattr(fd, a.o.opaqueXattr, []byte("y"), 0)
			})
		}
		return a.clearDir(dir)
	case strings.HasPrefix(base, whiteoutMetaPrefix):
		return nil // aufs internals
	}
	target := path.Join(dir, strings.TrimPrefix(base, whiteoutPrefix))
	if t := strings.TrimPrefix(base, whiteoutPrefix); t == "" || t == "." || t == ".." {
		return fmt.Errorf("%w: whiteout %q names no entry", ErrUnsafePath, h.Name)
	}
	if !a.o.overlay {
		if err := a.root.RemoveAll(target); err != nil {
			return fmt.Errorf("applying whiteout %s: %w", h.Name, err)
		}
		return nil
	}
	if err := a.mkParents(dir); err != nil {
		return err
	}
	if err := a.root.RemoveAll(target); err != nil {
		return fmt.Errorf("applying whiteout %s: %w", h.Name, err)
	}
	name := path.Base(target)
	return a.at(dir, func(fd int) error {
		if err := unix.Mknodat(fd, name, unix.S_IFCHR, 0); err != nil {
			return err
		}
		if err := unix.Fchownat(fd, name, h.Uid, h.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Sec: h.ModTime.Unix()}}
		return unix.UtimesNanoAt(fd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
	})
}

// clearDir removes what dir holds that this layer did not create.
func (a *applier) clearDir(dir string) error {
	f, err := a.root.Open(dir)
	if err != nil {
		return fmt.Errorf("applying opaque %s: %w", dir, err)
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("applying opaque %s: %w", dir, err)
	}
	for _, n := range names {
		p := path.Join(dir, n)
		if a.created[p] {
			continue
		}
		if err := a.root.RemoveAll(p); err != nil {
			return fmt.Errorf("applying opaque %s: %w", dir, err)
		}
	}
	return nil
}

// mkParents makes missing parent directories (0755, root-owned, as
// moby does).
func (a *applier) mkParents(dir string) error {
	if dir == "." {
		return nil
	}
	fi, err := a.root.Lstat(dir)
	if err == nil {
		if fi.IsDir() {
			return nil
		}
		return fmt.Errorf("%w: parent %s is not a directory", ErrUnsafePath, dir)
	}
	if err := a.root.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating parent %s: %w", dir, err)
	}
	return nil
}

func (a *applier) file(name string, h *tar.Header, r io.Reader) error {
	if h.Size < 0 {
		return fmt.Errorf("%s: negative size %d", name, h.Size)
	}
	if a.stats.Bytes+h.Size > a.o.maxBytes {
		return fmt.Errorf("layer holds more than %d bytes of file data", a.o.maxBytes)
	}
	f, err := a.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("creating %s: %w", name, err)
	}
	n, err := io.CopyBuffer(f, io.LimitReader(r, h.Size), a.buf)
	a.stats.Bytes += n
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != h.Size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

// meta sets owner, xattrs, mode and times of name, in that order (chown
// clears setuid bits, so mode comes after it).
func (a *applier) meta(name string, h *tar.Header) error {
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	if name == "." {
		dir, base = ".", "."
	}
	isLink := h.Typeflag == tar.TypeSymlink
	err := a.at(dir, func(fd int) error {
		if err := unix.Fchownat(fd, base, h.Uid, h.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
		if !isLink {
			for k, v := range h.PAXRecords {
				key, ok := strings.CutPrefix(k, "SCHILY.xattr.")
				if !ok || !(key == "security.capability" || strings.HasPrefix(key, "user.")) {
					continue
				}
				var err error
				if base == "." {
					err = unix.Fsetxattr(fd, key, []byte(v), 0)
				} else {
					// The magic link names the directory; base is
					// one component and is not followed.
					err = unix.Lsetxattr(fmt.Sprintf("/proc/self/fd/%d/%s", fd, base), key, []byte(v), 0)
				}
				if err != nil {
					return fmt.Errorf("setting xattr %s: %w", key, err)
				}
			}
			if err := unix.Fchmodat(fd, base, uint32(h.Mode&0o7777), 0); err != nil {
				return fmt.Errorf("chmod: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("applying %s: %w", name, err)
	}
	ts := unix.Timespec{Sec: h.ModTime.Unix(), Nsec: int64(h.ModTime.Nanosecond())}
	if h.Typeflag == tar.TypeDir {
		a.dirTimes = append(a.dirTimes, dirTime{name, ts})
		return nil
	}
	return a.setTimes(name, ts)
}

func (a *applier) setTimes(name string, mtime unix.Timespec) error {
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	if name == "." {
		base = "."
	}
	return a.at(dir, func(fd int) error {
		ts := []unix.Timespec{mtime, mtime}
		if err := unix.UtimesNanoAt(fd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("setting times of %s: %w", name, err)
		}
		return nil
	})
}

// at runs fn with a descriptor of dir opened inside the root.
func (a *applier) at(dir string, fn func(fd int) error) error {
	d, err := a.root.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	return fn(int(d.Fd()))
}
