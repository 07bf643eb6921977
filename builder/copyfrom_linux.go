package builder

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/dockerfile"
	"github.com/layercommit/layercommit/image"
	"github.com/layercommit/layercommit/internal/safepath"
	"github.com/layercommit/layercommit/internal/verify"
	"github.com/layercommit/layercommit/unpack"
)

// errNeedWholeTree stops extractPaths when the paths asked for cannot be
// told from the layer streams alone: a symlink on the way to one of them
// (or as one of them), or a hard link to a file outside them.
var errNeedWholeTree = errors.New("the paths need the whole tree")

// unpacked reports whether every layer of img is already an unpacked
// directory of the state dir (then an overlay of them costs nothing).
func (b *build) unpacked(img v1.Image) bool {
	ls, err := image.LayersWithDiffIDs(img)
	if err != nil {
		return false
	}
	for _, l := range ls {
		d, err := l.DiffID()
		if err != nil {
			return false
		}
		if _, ok := b.dirs[d]; !ok && !b.st.HasLayer(d) {
			return false
		}
	}
	return true
}

// extractPaths applies img's layers, bottom first, to a new directory of
// the state dir's tmp, keeping only the entries on the way to the clean
// names want, the names themselves and what is below them (whiteouts and
// opaque markers for those included), so that COPY --from of a few paths
// of a stage whose layers are only blobs (a cache import) does not unpack
// them whole. The layers are read top first, each filtered into a spool
// of the tmp dir: once every wanted name is settled (settling), the
// layers below are not read at all, so a file that a stage's last RUN
// wrote costs that layer only, not the stage's base and big COPY layers
// (on a fresh runner: not their download). Each layer read is checked
// against its diffID to its end. It returns the directory (the caller
// removes it) or errNeedWholeTree.
func (b *build) extractPaths(ctx context.Context, img v1.Image, want []string) (string, error) {
	ls, err := image.LayersWithDiffIDs(img)
	if err != nil {
		return "", err
	}
	tmp, err := b.st.TempDir("from-paths-")
	if err != nil {
		return "", err
	}
	tree := filepath.Join(tmp, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	set := newSettling(want)
	var spools []string
	for i := len(ls) - 1; i >= 0 && !set.done(); i-- {
		sp := filepath.Join(tmp, fmt.Sprintf("layer-%d.tar", i))
		if err := spoolPaths(sp, ls[i], want, set); err != nil {
			os.RemoveAll(tmp)
			return "", err
		}
		spools = append(spools, sp)
	}
	for j := len(spools) - 1; j >= 0; j-- {
		if err := applySpool(ctx, tree, spools[j]); err != nil {
			os.RemoveAll(tmp)
			return "", err
		}
	}
	return tmp, nil
}

// spoolPaths writes the entries of layer l that pathFilter keeps to the
// new file sp, telling set what the layer holds.
func spoolPaths(sp string, l v1.Layer, want []string, set *settling) error {
	diffID, err := l.DiffID()
	if err != nil {
		return err
	}
	rc, err := l.Uncompressed()
	if err != nil {
		return fmt.Errorf("reading layer %s: %w", diffID, err)
	}
	v := verify.Reader(rc, diffID, verify.UnknownSize)
	defer v.Close()
	f, err := os.OpenFile(sp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<16)
	err = pathFilter(v, bw, want, set)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil && !errors.Is(err, errNeedWholeTree) {
		return fmt.Errorf("extracting from layer %s: %w", diffID, err)
	}
	return err
}

// applySpool unpacks the spooled tar sp into tree.
func applySpool(ctx context.Context, tree, sp string) error {
	f, err := os.Open(sp)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := unpack.Apply(ctx, tree, bufio.NewReaderSize(f, 1<<16)); err != nil {
		return fmt.Errorf("extracting %s: %w", filepath.Base(sp), err)
	}
	return nil
}

// settling tracks, over layers read top first, which wanted names the
// layers read so far settle: a name whose topmost entry is a plain
// regular file is settled (no lower layer can change what it is or
// holds). Any other entry at a name, at an ancestor of it (but a plain
// directory) or below it (a directory's contents merge with the lower
// layers'; a whiteout or opaque marker, a hard link) makes that name
// unsettleable, and every layer is then read, as before.
type settling struct {
	want  []string
	state []settleState // by want
}

type settleState uint8

const (
	unsettled    settleState = iota
	settledHere              // by the layer being read, unless it also says more
	settled                  // by a layer above
	unsettleable             // cannot be told top down
)

func newSettling(want []string) *settling {
	return &settling{want: want, state: make([]settleState, len(want))}
}

// see notes the kept entry h of the layer being read: its clean name
// and the name it stands for (a whiteout's or opaque marker's target).
func (s *settling) see(h *tar.Header, name, target string) {
	for i, w := range s.want {
		if s.state[i] == settled || s.state[i] == unsettleable {
			continue
		}
		switch {
		case name == w && target == w && h.Typeflag == tar.TypeReg:
			s.state[i] = settledHere
		case target != w && strings.HasPrefix(w, target+"/") && name == target && h.Typeflag == tar.TypeDir,
			target == "." && name == "." && h.Typeflag == tar.TypeDir:
			// A plain directory on the way: no effect on w.
		case target == w || target == "." || strings.HasPrefix(w, target+"/") || strings.HasPrefix(target, w+"/"):
			s.state[i] = unsettleable
		}
	}
}

// endLayer closes the layer being read: what it settled stays settled.
func (s *settling) endLayer() {
	for i, st := range s.state {
		if st == settledHere {
			s.state[i] = settled
		}
	}
}

// done says whether every wanted name is settled by the layers read.
func (s *settling) done() bool {
	for _, st := range s.state {
		if st != settled {
			return false
		}
	}
	return len(s.state) > 0
}

// pathFilter copies the layer tar r to w, keeping the entries on the way
// to the names want (clean, relative), those names and what is below
// them, and the whiteouts and opaque markers of such entries, and tells
// set (if not nil) each one kept. A kept symlink on the way to a wanted
// name or as one, or a kept hard link to a name not kept, is
// errNeedWholeTree. r is read to its end.
func pathFilter(r io.Reader, w io.Writer, want []string, set *settling) error {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name, err := safepath.Clean(h.Name)
		if err != nil {
			return err
		}
		dir, base := path.Split(name)
		target := name
		switch {
		case base == ".wh..wh..opq":
			target = strings.TrimSuffix(dir, "/")
			if target == "" {
				target = "."
			}
		case strings.HasPrefix(base, ".wh."):
			target = path.Join(dir, strings.TrimPrefix(base, ".wh."))
		}
		on, in := wanted(target, want)
		if !on && !in {
			continue
		}
		if h.Typeflag == tar.TypeSymlink && on || h.Typeflag == tar.TypeGNUSparse {
			return errNeedWholeTree
		}
		if h.Typeflag == tar.TypeLink {
			t, err := safepath.Clean(h.Linkname)
			if err != nil {
				return err
			}
			if lon, lin := wanted(t, want); !lon && !lin {
				return errNeedWholeTree
			}
		}
		if set != nil {
			set.see(h, name, target)
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if set != nil {
		set.endLayer()
	}
	// Past the end-of-archive blocks, for the diffID check.
	_, err := io.Copy(io.Discard, r)
	return err
}

// wanted says whether the clean name n is on the way to one of want (an
// ancestor of it, or it) or in one (it or below it).
func wanted(n string, want []string) (on, in bool) {
	for _, w := range want {
		switch {
		case n == w:
			return true, true
		case n == "." || strings.HasPrefix(w, n+"/"):
			on = true
		case w == "." || strings.HasPrefix(n, w+"/"):
			in = true
		}
	}
	return on, in
}

// fromPaths are the clean names COPY --from reads in the stage or image,
// or nil when they cannot be told before the tree is there (wildcards,
// --parents, heredocs, an expansion error: copySources reports it).
func (b *build) fromPaths(s *stageState, in *dockerfile.CopyInstr) []string {
	if in.Parents || len(in.Heredocs) > 0 {
		return nil
	}
	var want []string
	for _, raw := range in.Sources {
		src, err := b.expand(s, in.Line, raw)
		if err != nil || hasWildcard(src) {
			return nil
		}
		r, err := contextPath(src)
		if err != nil {
			return nil
		}
		want = append(want, r)
	}
	return want
}
