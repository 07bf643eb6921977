package diff

import (
	"context"
	"path/filepath"
	"strings"
)

type aufs struct {
	upper string
	warn  Warner
}

// Aufs is the change set in an aufs-style upper dir, where deletions are
// already regular files named ".wh.NAME" and opaque directories already
// hold ".wh..wh..opq". Entries are written as they are, as moby's aufs
// driver wrote them; aufs' own ".wh..wh.*" entries at the root (plnk,
// aufs, orph) are skipped.
func Aufs(upper string, warn Warner) Source {
	if warn == nil {
		warn = func(string, ...any) {}
	}
	return &aufs{upper: upper, warn: warn}
}

func (a *aufs) Changes(ctx context.Context, fn ChangeFunc) error {
	if err := checkRootDir(a.upper); err != nil {
		return err
	}
	return a.walk(ctx, "", a.upper, fn)
}

func (a *aufs) walk(ctx context.Context, rel, dir string, fn ChangeFunc) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	names, err := readDirSorted(dir)
	if err != nil {
		return err
	}
	for _, name := range names {
		if rel == "" && strings.HasPrefix(name, WhiteoutMetaPrefix) && name != WhiteoutOpaqueDir {
			continue
		}
		p := filepath.Join(dir, name)
		info, link, capability, xs, err := entry(p)
		if err != nil {
			return err
		}
		if info.Mode&sIFMT == sIFSOCK {
			a.warn("skipping socket %s", joinRel(rel, name))
			continue
		}
		c := Change{Kind: Add, Path: joinRel(rel, name), Source: p, Info: info, Link: link, Capability: capability, xattrNames: xs.names}
		if strings.HasPrefix(name, WhiteoutPrefix) && name != WhiteoutOpaqueDir && !info.IsDir() {
			// A whiteout file: the change deletes the name it hides,
			// and the writer keeps the file's own header.
			c.Kind = Delete
			c.Path = joinRel(rel, strings.TrimPrefix(name, WhiteoutPrefix))
		}
		if err := fn(c); err != nil {
			return err
		}
		if info.IsDir() {
			if err := a.walk(ctx, c.Path, p, fn); err != nil {
				return err
			}
		}
	}
	return nil
}
