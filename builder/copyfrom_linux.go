package builder

import (
	"archive/tar"
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
		if _, ok := b.dirs[d]; !ok && !dirExists(b.st.LayerDir(d)) {
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
// them whole. Each layer stream is checked against its diffID to its end.
// It returns the directory (the caller removes it) or errNeedWholeTree.
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
	for _, l := range ls {
		if err := applyPaths(ctx, tree, l, want); err != nil {
			os.RemoveAll(tmp)
			return "", err
		}
	}
	return tmp, nil
}

// applyPaths applies the entries of layer l that pathFilter keeps to tree.
func applyPaths(ctx context.Context, tree string, l v1.Layer, want []string) error {
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
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := pathFilter(v, pw, want)
		pw.CloseWithError(err)
		done <- err
	}()
	_, err = unpack.Apply(ctx, tree, pr)
	// The filter returns once the pipe is closed.
	pr.CloseWithError(errors.New("unpack stopped"))
	filterErr := <-done
	if errors.Is(filterErr, errNeedWholeTree) {
		return errNeedWholeTree
	}
	if err != nil {
		return fmt.Errorf("extracting from layer %s: %w", diffID, err)
	}
	return filterErr
}

// pathFilter copies the layer tar r to w, keeping the entries on the way
// to the names want (clean, relative), those names and what is below
// them, and the whiteouts and opaque markers of such entries. A kept
// symlink on the way to a wanted name or as one, or a kept hard link to
// a name not kept, is errNeedWholeTree. r is read to its end.
func pathFilter(r io.Reader, w io.Writer, want []string) error {
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
