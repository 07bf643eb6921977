package diff

import (
	"context"
	"path/filepath"
	"strings"
)

// FuseXattrPrefix is where fuse-overlayfs keeps marks of its own
// (opaque, origin) when it may not write trusted.overlay.*.
const FuseXattrPrefix = "user.fuseoverlayfs."

// WithFuse reads the upper dir of a fuse-overlayfs mount (overlay.Options
// Fuse), whose marks differ from the kernel's, and gives the changes the
// kernel's upper dir would hold for the same operations, so that the
// layer is the kernel overlay's byte for byte:
//
//   - a whiteout is a character device 0/0 or, where fuse-overlayfs could
//     not mknod, an empty file .wh.NAME; either is one Delete of NAME at
//     NAME's place in the order. The kernel links the whiteouts of unlink
//     and rmdir to one inode of the mount (the tar then has hard links
//     between them) while a rename's whiteout is the upper file system's
//     own node: fuse-overlayfs 1.10 makes the first kind by
//     RENAME_WHITEOUT (mode 0) or as .wh.NAME, the second by mknod (mode
//     0700), so the first kind share one node here and the second do not;
//   - an opaque dir carries trusted.overlay.opaque, user.overlay.opaque or
//     user.fuseoverlayfs.opaque "y" and/or a .wh..wh..opq file (and a
//     stray .wh..opq whiteout); no name starting .wh. is content;
//   - fuse-overlayfs makes every new dir opaque and may write whiteouts of
//     names no lower has; the kernel marks a dir opaque and writes a
//     whiteout only where the name is in the lowers' merged view. So a
//     whiteout or an opaque mark is kept only where the lowers (WithLowers,
//     top first) show the name under no opaque dir of the upper;
//   - its xattrs user.fuseoverlayfs.*, user.overlay.* and
//     trusted.overlay.* are its own, never content.
//
// fuse-overlayfs has no redirects or metacopy; WithUserXattr only changes
// how the lowers' opaque marks are read.
func WithFuse() OverlayOption { return func(o *overlay) { o.fuse = true } }

// fuseWalk is one walk of a fuse-overlayfs upper dir; whiteout is the
// node its unlink whiteouts share.
type fuseWalk struct {
	o        *overlay
	whiteout *Info
}

func (o *overlay) fuseChanges(ctx context.Context, fn ChangeFunc) error {
	w := &fuseWalk{o: o}
	return w.walk(ctx, "", o.upper, true, fn)
}

// walk emits dir's changes; visible says the lowers show rel (no opaque
// dir of the upper above it, and it is a dir in their merged view).
func (w *fuseWalk) walk(ctx context.Context, rel, dir string, visible bool, fn ChangeFunc) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	names, err := readDirSorted(dir)
	if err != nil {
		return err
	}
	type found struct {
		p        string
		whiteout bool
	}
	entries := map[string]found{}
	var order []string
	add := func(name string, f found) {
		if old, ok := entries[name]; ok && !old.whiteout {
			return // the entry itself wins over a stale .wh.NAME
		}
		if _, ok := entries[name]; !ok {
			order = append(order, name)
		}
		entries[name] = f
	}
	for _, name := range names {
		p := filepath.Join(dir, name)
		switch {
		case name == WhiteoutOpaqueDir:
			// Read with the dir (fuseOpaque).
		case strings.HasPrefix(name, WhiteoutPrefix):
			if t := name[len(WhiteoutPrefix):]; t != "" {
				add(t, found{p, true})
			}
		default:
			info, err := lstat(p)
			if err != nil {
				return err
			}
			add(name, found{p, info.IsWhiteout()})
		}
	}
	sortStrings(order)
	for _, name := range order {
		f := entries[name]
		r := joinRel(rel, name)
		if f.whiteout {
			if !visible || !w.inLowers(r) {
				continue
			}
			info, err := lstat(f.p)
			if err != nil {
				return err
			}
			shared := !info.IsWhiteout() || info.Mode&0o7777 == 0
			info.Mode, info.Major, info.Minor, info.Size, info.Nlink = sIFCHR, 0, 0, 0, 1
			if shared {
				if w.whiteout == nil {
					info.Nlink = 2
					w.whiteout = &info
				}
				info = *w.whiteout
			}
			if err := fn(Change{Kind: Delete, Path: r, Source: f.p, Info: info}); err != nil {
				return err
			}
			continue
		}
		info, link, capability, xs, err := entry(f.p)
		if err != nil {
			return err
		}
		if info.Mode&sIFMT == sIFSOCK {
			w.o.warn("skipping socket %s", r)
			continue
		}
		c := Change{Kind: Add, Path: r, Source: f.p, Info: info, Link: link, Capability: capability, xattrNames: xs.names, internalPrefix: w.o.prefix, fuse: true}
		if !info.IsDir() {
			if err := fn(c); err != nil {
				return err
			}
			continue
		}
		below := visible && w.inLowers(r)
		opaque, err := fuseOpaque(f.p, xs)
		if err != nil {
			return err
		}
		c.Opaque = opaque && below
		if err := fn(c); err != nil {
			return err
		}
		if err := w.walk(ctx, r, f.p, below && !opaque, fn); err != nil {
			return err
		}
	}
	return nil
}

// fuseOpaque reports whether a dir of a fuse-overlayfs upper is marked
// opaque, by any of its marks (fuse-overlayfs's is_directory_opaque).
func fuseOpaque(dir string, xs xattrs) (bool, error) {
	for _, x := range []string{OpaqueXattr, UserOverlayXattrPrefix + "opaque", FuseXattrPrefix + "opaque"} {
		if !xs.has(x) {
			continue
		}
		if v, err := getXattr(dir, x); err != nil || v == "y" {
			return v == "y", err
		}
	}
	_, err := lstat(filepath.Join(dir, WhiteoutOpaqueDir))
	return err == nil, nil
}

// inLowers reports whether the lowers' merged view has an entry at rel.
func (w *fuseWalk) inLowers(rel string) bool {
	parts := strings.Split(rel, "/")
	dirs := w.o.lowers
	for i, part := range parts {
		var next []string
		for _, d := range dirs {
			p := filepath.Join(d, part)
			info, err := lstat(p)
			if err != nil {
				continue
			}
			if info.IsWhiteout() {
				break
			}
			if i == len(parts)-1 {
				return true
			}
			if !info.IsDir() {
				break
			}
			next = append(next, p)
			xs, err := listXattrs(p)
			if err != nil {
				break
			}
			if op, _ := w.o.isOpaque(p, xs); op {
				break
			}
		}
		if len(next) == 0 {
			return false
		}
		dirs = next
	}
	return false
}
