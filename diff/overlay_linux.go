package diff

import (
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

// ErrOverlayFeature is wrapped by the errors of an Overlay walk that meets
// an overlayfs feature it cannot turn into layer entries: a redirect or
// metacopy without the lower dirs, or an xattr whiteout.
var ErrOverlayFeature = errors.New("overlayfs feature not supported here")

// OverlayOption configures an Overlay source.
type OverlayOption func(*overlay)

// WithUserXattr reads the overlay attributes in the user.overlay.*
// namespace, as a mount with the userxattr option writes them, instead of
// trusted.overlay.*.
func WithUserXattr() OverlayOption { return func(o *overlay) { o.prefix = UserOverlayXattrPrefix } }

// WithLowers names the lower directories of the mount, top first. They are
// read only where the upper dir points into them: directories renamed with
// redirect_dir (overlay.redirect) and files copied up with metacopy
// (overlay.metacopy). Without lowers such entries are an error.
func WithLowers(dirs ...string) OverlayOption {
	return func(o *overlay) { o.lowers = append([]string(nil), dirs...) }
}

// WithWarner receives notices about entries that are skipped, such as
// sockets.
func WithWarner(w Warner) OverlayOption { return func(o *overlay) { o.warn = w } }

type overlay struct {
	upper  string
	prefix string
	lowers []string
	warn   Warner
	fuse   bool
}

// Overlay is the change set in an overlayfs upper dir: whiteouts are
// character devices 0/0 and a directory whose overlay.opaque xattr is the
// single byte "y" hides the lower directory. This is the walk moby's
// overlay2 driver does for docker commit.
func Overlay(upper string, opts ...OverlayOption) Source {
	o := &overlay{upper: upper, prefix: OverlayXattrPrefix, warn: func(string, ...any) {}}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

func (o *overlay) Changes(ctx context.Context, fn ChangeFunc) error {
	if err := checkRootDir(o.upper); err != nil {
		return err
	}
	if o.fuse {
		return o.fuseChanges(ctx, fn)
	}
	return o.walk(ctx, "", o.upper, fn)
}

func (o *overlay) walk(ctx context.Context, rel, dir string, fn ChangeFunc) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	names, err := readDirSorted(dir)
	if err != nil {
		return err
	}
	for _, name := range names {
		p := filepath.Join(dir, name)
		r := joinRel(rel, name)
		info, link, capability, xs, err := entry(p)
		if err != nil {
			return err
		}
		c := Change{Kind: Add, Path: r, Source: p, Info: info, Link: link, Capability: capability, xattrNames: xs.names, internalPrefix: o.prefix}
		switch {
		case info.IsWhiteout():
			c.Kind = Delete
			if err := fn(c); err != nil {
				return err
			}
			continue
		case info.Mode&sIFMT == sIFSOCK:
			o.warn("skipping socket %s", r)
			continue
		case info.IsRegular() && xs.has(o.prefix+"whiteout"):
			// An xattr whiteout (Linux 6.7+ "xwhiteout"): the kernel
			// reads them in lower layers but never writes them in an
			// upper dir, and moby does not know them. Exporting the
			// empty file would undo the deletion; fail instead.
			return fmt.Errorf("%w: %s is an xattr whiteout (%swhiteout)", ErrOverlayFeature, r, o.prefix)
		case info.IsRegular() && xs.has(o.prefix+"metacopy"):
			if err := o.resolveMetacopy(&c, xs); err != nil {
				return err
			}
		}
		if !info.IsDir() {
			if err := fn(c); err != nil {
				return err
			}
			continue
		}
		if xs.has(o.prefix + "redirect") {
			lowers, err := o.redirectLowers(r, p)
			if err != nil {
				return err
			}
			c.Opaque = true
			if err := fn(c); err != nil {
				return err
			}
			if err := o.walkMerged(ctx, r, append([]string{p}, lowers...), fn); err != nil {
				return err
			}
			continue
		}
		if c.Opaque, err = o.isOpaque(p, xs); err != nil {
			return err
		}
		if err := fn(c); err != nil {
			return err
		}
		if err := o.walk(ctx, r, p, fn); err != nil {
			return err
		}
	}
	return nil
}

// isOpaque reports whether dir carries overlay.opaque = "y". Any other
// value ("x" marks xattr whiteouts, not opacity) is not opaque.
func (o *overlay) isOpaque(dir string, xs xattrs) (bool, error) {
	if !xs.has(o.prefix + "opaque") {
		return false, nil
	}
	v, err := getXattr(dir, o.prefix+"opaque")
	return v == "y", err
}

// redirectLowers resolves the overlay.redirect of the directory at rel to
// the directories of the lowers it merges with, top first.
func (o *overlay) redirectLowers(rel, p string) ([]string, error) {
	if len(o.lowers) == 0 {
		return nil, fmt.Errorf("%s: directory renamed by overlayfs redirect_dir (%sredirect): give the lower dirs (--lower) to resolve it: %w", rel, o.prefix, ErrOverlayFeature)
	}
	target, err := getXattr(p, o.prefix+"redirect")
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(target, "/") {
		target = path.Join(path.Dir("/"+rel), target)
	}
	return o.lowerDirs(path.Clean(target))
}

// lowerDirs finds the directory at rel in the lowers, top first, stopping
// at the first lower where rel is a non-directory (or a whiteout) or is an
// opaque directory.
func (o *overlay) lowerDirs(rel string) ([]string, error) {
	var dirs []string
	for _, l := range o.lowers {
		p := filepath.Join(l, rel)
		info, err := lstat(p)
		if err != nil {
			continue
		}
		if !info.IsDir() {
			break
		}
		dirs = append(dirs, p)
		xs, err := listXattrs(p)
		if err != nil {
			return nil, err
		}
		if opaque, err := o.isOpaque(p, xs); err != nil {
			return nil, err
		} else if opaque {
			break
		}
	}
	return dirs, nil
}

// resolveMetacopy points c at the lower file that holds the data of a
// metacopy upper file.
func (o *overlay) resolveMetacopy(c *Change, xs xattrs) error {
	if len(o.lowers) == 0 {
		return fmt.Errorf("%s: file copied up with overlayfs metacopy (%smetacopy) has its data in a lower layer: give the lower dirs (--lower) to resolve it: %w", c.Path, o.prefix, ErrOverlayFeature)
	}
	origin := "/" + c.Path
	if xs.has(o.prefix + "redirect") {
		target, err := getXattr(c.Source, o.prefix+"redirect")
		if err != nil {
			return err
		}
		if strings.HasPrefix(target, "/") {
			origin = target
		} else {
			origin = path.Join(path.Dir(origin), target)
		}
	}
	for _, l := range o.lowers {
		p := filepath.Join(l, origin)
		info, err := lstat(p)
		if err != nil {
			continue
		}
		if !info.IsRegular() || info.Size != c.Info.Size {
			return fmt.Errorf("%s: metacopy data in lower %s is not a regular file of %d bytes", c.Path, p, c.Info.Size)
		}
		c.Source = p
		c.sourceIno = info.Ino
		return nil
	}
	return fmt.Errorf("%s: metacopy data not found in any lower dir", c.Path)
}

// walkMerged emits the full merged contents of a directory whose layer
// entry is opaque. dirs are the directories that make it up, top first
// (the upper's, if any, then the lowers'). An entry comes from the top-most
// dir that has the name; a whiteout there hides it. Whiteouts are not
// emitted since the opaque marker already hides everything below.
func (o *overlay) walkMerged(ctx context.Context, rel string, dirs []string, fn ChangeFunc) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	top := map[string]int{} // name -> index in dirs of the dir that shows it
	var names []string
	for i, d := range dirs {
		ns, err := readDirSorted(d)
		if err != nil {
			return err
		}
		for _, n := range ns {
			if _, ok := top[n]; !ok {
				top[n] = i
				names = append(names, n)
			}
		}
	}
	sortStrings(names)
	for _, name := range names {
		i := top[name]
		p := filepath.Join(dirs[i], name)
		r := joinRel(rel, name)
		info, link, capability, xs, err := entry(p)
		if err != nil {
			return err
		}
		if info.IsWhiteout() {
			continue
		}
		if info.Mode&sIFMT == sIFSOCK {
			o.warn("skipping socket %s", r)
			continue
		}
		c := Change{Kind: Add, Path: r, Source: p, Info: info, Link: link, Capability: capability, xattrNames: xs.names, internalPrefix: o.prefix}
		if info.IsRegular() && xs.has(o.prefix+"metacopy") {
			if err := o.resolveMetacopy(&c, xs); err != nil {
				return err
			}
		}
		if err := fn(c); err != nil {
			return err
		}
		if !info.IsDir() {
			continue
		}
		sub := []string{p}
		opaque, err := o.isOpaque(p, xs)
		if err != nil {
			return err
		}
		switch {
		case opaque:
		case xs.has(o.prefix + "redirect"):
			more, err := o.redirectLowers(r, p)
			if err != nil {
				return err
			}
			sub = append(sub, more...)
		default:
			for _, d := range dirs[i+1:] {
				q := filepath.Join(d, name)
				qi, err := lstat(q)
				if err != nil {
					continue
				}
				if !qi.IsDir() {
					break
				}
				sub = append(sub, q)
				qx, err := listXattrs(q)
				if err != nil {
					return err
				}
				if op, err := o.isOpaque(q, qx); err != nil {
					return err
				} else if op {
					break
				}
			}
		}
		if err := o.walkMerged(ctx, r, sub, fn); err != nil {
			return err
		}
	}
	return nil
}
