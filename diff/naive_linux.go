package diff

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
)

type naive struct {
	lower, changed string
	warn           Warner
	// walking selects containerd's rules (Walking) over the naive ones.
	walking bool
	// upper, for a Snapshot, is the overlay upper dir whose merge with
	// the lowers is changed (while lower is the merge of those lowers):
	// where it has no entry, both trees show the same lower file.
	upper string
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

// Walking is the change set between two whole trees as containerd's
// walking differ finds it (continuity's fs.Changes double walk feeding
// pkg/archive's ChangeWriter): lower is the merged tree before, upper the
// merged tree after (mounted views, not an upper dir; Snapshot mounts
// them). It is Naive's walk with containerd's rules:
//
//   - Two entries are the same when their mode, owner, device number and
//     security.capability agree and, for a non-directory, its size and
//     mtime (seconds and nanoseconds); when both mtimes have no
//     nanoseconds, a symlink's target and a non-empty file's content
//     are compared too (continuity's sameFile). A directory's mtime is
//     never compared: a directory whose only change is its mtime is not
//     written, unless as the parent of a change.
//   - Parents are written before a change below them, read from upper
//     when they are reached (ChangeWriter.includeParents).
//   - An unchanged name of a file with several links is held back and
//     written as a hard link right after the first changed or added name
//     of its inode, or at once when that name was written already
//     (ChangeWriter's inodeRefs and ChangeKindUnmodified): a link
//     added to a base file brings every other name of the file with it.
//   - Deletes are computed whiteouts (no node); sockets are skipped.
//
// Whiteouts, an opaque directory's replaced children included, are one
// per missing name, as in Naive. The header rules are the profile's
// (compat.Containerd for containerd's bytes).
func Walking(lower, upper string, warn Warner) Source {
	if warn == nil {
		warn = func(string, ...any) {}
	}
	return &naive{lower: lower, changed: upper, warn: warn, walking: true}
}

func (n *naive) Changes(ctx context.Context, fn ChangeFunc) error {
	if err := checkRootDir(n.lower); err != nil {
		return err
	}
	if err := checkRootDir(n.changed); err != nil {
		return err
	}
	e := &emitter{fn: fn, root: n.changed, added: map[string]bool{}}
	if n.walking {
		e.links = &linkSets{written: map[uint64]bool{}, held: map[uint64][]string{}}
	}
	var up upperAt
	if n.upper != "" {
		up = upperAt{path: n.upper, known: true}
	}
	return n.compare(ctx, "", n.lower, n.changed, up, e)
}

// upperAt is where a directory of a Snapshot's merged tree is in its
// upper dir: path is "" when the upper dir has no such directory (all of
// it comes from the lowers). known is false when that cannot be told
// (not a Snapshot, or below a directory the upper dir redirects).
type upperAt struct {
	path  string
	known bool
}

// child returns the position of name, a directory entry present in both
// trees, and whether both trees show the very same lower file there:
// the upper dir has no entry for it (no copy up, no replacement), so the
// merged tree finds it in the lowers exactly as the lower tree does.
func (u upperAt) child(name string) (upperAt, bool, error) {
	if !u.known {
		return u, false, nil
	}
	if u.path == "" {
		return u, true, nil
	}
	p := filepath.Join(u.path, name)
	info, err := lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return upperAt{known: true}, true, nil
	}
	if err != nil {
		return upperAt{}, false, err
	}
	if info.IsDir() {
		xs, err := listXattrs(p)
		if err != nil {
			return upperAt{}, false, err
		}
		if xs.has(OverlayXattrPrefix+"redirect") || xs.has(UserOverlayXattrPrefix+"redirect") {
			// Its lower part is found elsewhere: compare everything.
			return upperAt{}, false, nil
		}
	}
	return upperAt{path: p, known: true}, false, nil
}

// emitter writes changes with their parents: a directory not yet written
// is read from the changed tree and written before the first change below
// it, as containerd's ChangeWriter.includeParents does (for changes in
// walk order, these are the unchanged directories on the way down).
type emitter struct {
	fn    ChangeFunc
	root  string
	added map[string]bool // directories written, by path
	links *linkSets       // Walking only
}

// linkSets is the walking differ's hard-link bookkeeping: inodes of which
// a name was written, and unchanged names held back until one is.
type linkSets struct {
	written map[uint64]bool
	held    map[uint64][]string
}

func (e *emitter) emit(c Change) error {
	if err := e.parents(path.Dir(c.Path)); err != nil {
		return err
	}
	if c.Kind == Add && c.Info.IsDir() {
		e.added[c.Path] = true
	}
	first := e.links != nil && c.Kind == Add && linked(c.Info) && !e.links.written[c.Info.Ino]
	ino := c.Info.Ino
	if err := e.fn(c); err != nil {
		return err
	}
	if !first {
		return nil
	}
	// The first name of the inode: the names held back follow it as
	// links (the header rules link every later name to the first).
	e.links.written[ino] = true
	held := e.links.held[ino]
	delete(e.links.held, ino)
	for _, rel := range held {
		p := filepath.Join(e.root, rel)
		info, link, capability, xs, err := entry(p)
		if err != nil {
			return err
		}
		if err := e.emit(Change{Kind: Add, Path: rel, Source: p, Info: info, Link: link, Capability: capability, xattrNames: xs.names}); err != nil {
			return err
		}
	}
	return nil
}

// unchanged takes a name the walk found unchanged: nothing for a naive
// diff; for the walking differ a name of a file with several links is
// written as a link when its inode was written already, else held back.
func (e *emitter) unchanged(c Change) error {
	if e.links == nil || !linked(c.Info) {
		return nil
	}
	if e.links.written[c.Info.Ino] {
		return e.emit(c)
	}
	e.links.held[c.Info.Ino] = append(e.links.held[c.Info.Ino], c.Path)
	return nil
}

// linked reports whether an entry is a file with more than one name
// (continuity's GetLinkInfo: never a directory).
func linked(i Info) bool { return !i.IsDir() && i.Nlink > 1 }

// parents writes dir and the directories above it that are not written
// yet, top first.
func (e *emitter) parents(dir string) error {
	if dir == "." || dir == "" || e.added[dir] {
		return nil
	}
	if err := e.parents(path.Dir(dir)); err != nil {
		return err
	}
	p := filepath.Join(e.root, dir)
	info, link, capability, xs, err := entry(p)
	if err != nil {
		return err
	}
	e.added[dir] = true
	return e.fn(Change{Kind: Add, Path: dir, Source: p, Info: info, Link: link, Capability: capability, xattrNames: xs.names})
}

func (n *naive) compare(ctx context.Context, rel, lowerDir, changedDir string, up upperAt, e *emitter) error {
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
			cup, same, err := up.child(cnames[j])
			if err != nil {
				return err
			}
			if err := n.compareEntry(ctx, joinRel(rel, cnames[j]), filepath.Join(lowerDir, lnames[i]), filepath.Join(changedDir, cnames[j]), cup, same, e); err != nil {
				return err
			}
			i++
			j++
		}
	}
	return nil
}

// compareEntry compares the entries at lp and cp. lowerFile says both
// trees show the same lower file there: its content need not be read to
// know it is the same (continuity reads it, finding it equal).
func (n *naive) compareEntry(ctx context.Context, rel, lp, cp string, up upperAt, lowerFile bool, e *emitter) error {
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
	sameAs := sameEntry
	if n.walking {
		sameAs = sameFile
	}
	if !li.IsDir() || !ci.IsDir() {
		lc, cc := lp, cp
		if lowerFile {
			lc, cc = "", ""
		}
		same, err := sameAs(li, ci, llink, clink, lcap, ccap, lc, cc)
		if err != nil {
			return err
		}
		if same {
			return e.unchanged(c)
		}
		if ci.IsDir() {
			return n.addTree(ctx, rel, cp, e)
		}
		return e.emit(c)
	}
	if same, err := sameAs(li, ci, "", "", lcap, ccap, "", ""); err != nil {
		return err
	} else if !same {
		if err := e.emit(c); err != nil {
			return err
		}
	}
	return n.compare(ctx, rel, lp, cp, up, e)
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

// sameFile is continuity's sameFile (fs/path.go) over two lstats: mode,
// owner, device number and capability; then, for a non-directory, size
// and mtime to the nanosecond, and when both mtimes have no nanoseconds
// the symlink target or the content of a non-empty file. continuity
// first asks os.SameFile, which only says yes where all of this agrees.
// An empty ap says the content is known to be the same.
func sameFile(a, b Info, alink, blink, acap, bcap, ap, bp string) (bool, error) {
	if a.Mode != b.Mode || a.Uid != b.Uid || a.Gid != b.Gid || a.Major != b.Major || a.Minor != b.Minor || acap != bcap {
		return false, nil
	}
	if a.IsDir() {
		return true, nil
	}
	if a.Size != b.Size || a.Mtime != b.Mtime || a.MtimeNsec != b.MtimeNsec {
		return false, nil
	}
	switch {
	case a.MtimeNsec != 0:
		return true, nil
	case a.Mode&sIFMT == sIFLNK:
		return alink == blink, nil
	case a.Size == 0 || ap == "":
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
