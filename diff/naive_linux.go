package diff

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
)

type naive struct {
	lower, changed string
	warn           Warner
}

// Naive is the change set between two trees, for file systems without
// overlay: lower is the tree before, changed the tree after. Entries of
// changed that are new or differ (type, mode, owner, size, mtime, device,
// link target, capability, or content when mtimes are too coarse to tell)
// are added, with their parent directories so that every entry's parent
// comes first; entries missing from changed become whiteouts with no
// on-disk node (mode 0, owner 0, mtime 0). There are no opaque
// directories: a replaced directory's missing children each get a whiteout.
func Naive(lower, changed string, warn Warner) Source {
	if warn == nil {
		warn = func(string, ...any) {}
	}
	return &naive{lower: lower, changed: changed, warn: warn}
}

func (n *naive) Changes(ctx context.Context, fn ChangeFunc) error {
	if err := checkRootDir(n.lower); err != nil {
		return err
	}
	if err := checkRootDir(n.changed); err != nil {
		return err
	}
	e := &emitter{fn: fn}
	return n.compare(ctx, "", n.lower, n.changed, e)
}

// emitter holds back unchanged parent directories until a change below
// them is emitted.
type emitter struct {
	fn      ChangeFunc
	pending []Change
}

func (e *emitter) emit(c Change) error {
	for _, p := range e.pending {
		if err := e.fn(p); err != nil {
			return err
		}
	}
	e.pending = e.pending[:0]
	return e.fn(c)
}

func (n *naive) compare(ctx context.Context, rel, lowerDir, changedDir string, e *emitter) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	lnames, err := readDirSorted(lowerDir)
	if err != nil {
		return err
	}
	cnames, err := readDirSorted(changedDir)
	if err != nil {
		return err
	}
	i, j := 0, 0
	for i < len(lnames) || j < len(cnames) {
		switch {
		case j == len(cnames) || (i < len(lnames) && lnames[i] < cnames[j]):
			if err := e.emit(Change{Kind: Delete, Path: joinRel(rel, lnames[i])}); err != nil {
				return err
			}
			i++
		case i == len(lnames) || cnames[j] < lnames[i]:
			if err := n.addTree(ctx, joinRel(rel, cnames[j]), filepath.Join(changedDir, cnames[j]), e); err != nil {
				return err
			}
			j++
		default:
			if err := n.compareEntry(ctx, joinRel(rel, cnames[j]), filepath.Join(lowerDir, lnames[i]), filepath.Join(changedDir, cnames[j]), e); err != nil {
				return err
			}
			i++
			j++
		}
	}
	return nil
}

func (n *naive) compareEntry(ctx context.Context, rel, lp, cp string, e *emitter) error {
	li, llink, lcap, _, err := entry(lp)
	if err != nil {
		return err
	}
	ci, clink, ccap, cxs, err := entry(cp)
	if err != nil {
		return err
	}
	if ci.Mode&sIFMT == sIFSOCK {
		n.warn("skipping socket %s", rel)
		return nil
	}
	c := Change{Kind: Add, Path: rel, Source: cp, Info: ci, Link: clink, Capability: ccap, xattrNames: cxs.names}
	if !li.IsDir() || !ci.IsDir() {
		same, err := sameEntry(li, ci, llink, clink, lcap, ccap, lp, cp)
		if err != nil || same {
			return err
		}
		if ci.IsDir() {
			return n.addTree(ctx, rel, cp, e)
		}
		return e.emit(c)
	}
	if same, _ := sameEntry(li, ci, "", "", lcap, ccap, "", ""); same {
		e.pending = append(e.pending, c)
	} else if err := e.emit(c); err != nil {
		return err
	}
	depth := len(e.pending)
	if err := n.compare(ctx, rel, lp, cp, e); err != nil {
		return err
	}
	if len(e.pending) == depth && depth > 0 && e.pending[depth-1].Path == rel {
		e.pending = e.pending[:depth-1]
	}
	return nil
}

// addTree emits the entry at p and, for a directory, everything below it.
func (n *naive) addTree(ctx context.Context, rel, p string, e *emitter) error {
	info, link, capability, xs, err := entry(p)
	if err != nil {
		return err
	}
	if info.Mode&sIFMT == sIFSOCK {
		n.warn("skipping socket %s", rel)
		return nil
	}
	if err := e.emit(Change{Kind: Add, Path: rel, Source: p, Info: info, Link: link, Capability: capability, xattrNames: xs.names}); err != nil {
		return err
	}
	if !info.IsDir() {
		return nil
	}
	names, err := readDirSorted(p)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := n.addTree(ctx, joinRel(rel, name), filepath.Join(p, name), e); err != nil {
			return err
		}
	}
	return nil
}

// sameEntry reports whether two entries would be written the same. Regular
// files whose mtimes carry no nanoseconds are compared by content, since a
// coarse clock cannot tell a rewrite of the same size apart.
func sameEntry(a, b Info, alink, blink, acap, bcap, ap, bp string) (bool, error) {
	if a.Mode != b.Mode || a.Uid != b.Uid || a.Gid != b.Gid || a.Major != b.Major || a.Minor != b.Minor ||
		alink != blink || acap != bcap {
		return false, nil
	}
	if a.IsDir() {
		return a.Mtime == b.Mtime && a.MtimeNsec == b.MtimeNsec, nil
	}
	if a.Size != b.Size || a.Mtime != b.Mtime || a.MtimeNsec != b.MtimeNsec {
		return false, nil
	}
	if !a.IsRegular() || a.MtimeNsec != 0 || ap == "" {
		return true, nil
	}
	return sameContent(ap, bp)
}

func sameContent(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ba := make([]byte, 64<<10)
	bb := make([]byte, 64<<10)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if ea == io.EOF || ea == io.ErrUnexpectedEOF {
			return eb == ea, nil
		}
		if ea != nil {
			return false, ea
		}
		if eb != nil {
			return false, eb
		}
	}
}
