package commit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/builder"
	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/image"
	"github.com/layercommit/layercommit/internal/overlay"
	"github.com/layercommit/layercommit/layer"
	"github.com/layercommit/layercommit/statedir"
)

// ErrNothingToSquash is returned by build --squash when the target stage
// adds no layer to its base. (Docker's daemon fails there too, asking
// its layer store for a diff to a layer that is not a parent.)
var ErrNothingToSquash = errors.New("--squash: the last stage adds no layer to its base, nothing to squash")

// squashBuild is `docker build --squash` (moby's SquashImage with the
// last stage's FROM image as the parent): the labels are set first (the
// unsquashed image carries them, as docker's LABEL step does), then one
// layer, the naive diff of the base's merged tree against the built
// one's (so what the build deleted from the base is a whiteout), goes on
// the base's layers; every history entry past the base's is marked
// empty_layer and one entry {created, comment "merge <built ID> to <base
// ID>"} ("create new from <built ID>" for FROM scratch) is appended; the
// config's created is that time too: now, or o.SourceDateEpoch.
//
// The layers of both trees are the state dir's unpacked dirs (unpacked
// there, digest-checked, when a step did not leave them), mounted as two
// read-only overlays that are gone when it returns.
func squashBuild(ctx context.Context, built *builder.Result, labels map[string]string, o builder.Options) (v1.Image, error) {
	img, err := finish(built.Image, labels, nil)
	if err != nil {
		return nil, err
	}
	id, err := img.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("squashing: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("squashing: %w", err)
	}
	cf = cf.DeepCopy()
	var nBase, nBaseHist int
	comment := fmt.Sprintf("create new from %s", id)
	if built.Base != nil {
		bcf, err := built.Base.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("squashing: reading the base: %w", err)
		}
		bid, err := built.Base.ConfigName()
		if err != nil {
			return nil, fmt.Errorf("squashing: reading the base: %w", err)
		}
		nBase, nBaseHist = len(bcf.RootFS.DiffIDs), len(bcf.History)
		comment = fmt.Sprintf("merge %s to %s", id, bid)
		if nBase > len(cf.RootFS.DiffIDs) {
			return nil, fmt.Errorf("squashing: the base has %d layers, the built image %d", nBase, len(cf.RootFS.DiffIDs))
		}
		for i, d := range bcf.RootFS.DiffIDs {
			if cf.RootFS.DiffIDs[i] != d {
				return nil, fmt.Errorf("squashing: layer %d of the built image (%s) is not the base's (%s)", i+1, cf.RootFS.DiffIDs[i], d)
			}
		}
	}
	if nBase == len(cf.RootFS.DiffIDs) {
		return nil, ErrNothingToSquash
	}
	docker, err := image.DockerMediaTypes(img)
	if err != nil {
		return nil, fmt.Errorf("squashing: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("squashing: %w", err)
	}
	squashed, err := squashLayer(ctx, img, nBase, docker, o)
	if err != nil {
		return nil, err
	}

	now := time.Now().UTC()
	if e := o.SourceDateEpoch; e != nil {
		now = time.Unix(*e, 0).UTC()
	}
	diffID, err := squashed.DiffID()
	if err != nil {
		return nil, fmt.Errorf("squashing: %w", err)
	}
	cf.RootFS.DiffIDs = append(cf.RootFS.DiffIDs[:nBase:nBase], diffID)
	for i := nBaseHist; i < len(cf.History); i++ {
		cf.History[i].EmptyLayer = true
	}
	cf.History = append(cf.History, v1.History{Created: v1.Time{Time: now}, Comment: comment})
	cf.Created = v1.Time{Time: now}

	adds := make([]mutate.Addendum, 0, nBase+1)
	for _, l := range layers[:nBase] {
		adds = append(adds, mutate.Addendum{Layer: l})
	}
	adds = append(adds, mutate.Addendum{Layer: squashed})
	out, err := mutate.Append(image.Scratch(!docker), adds...)
	if err != nil {
		return nil, fmt.Errorf("squashing: %w", err)
	}
	if out, err = mutate.ConfigFile(out, cf); err != nil {
		return nil, fmt.Errorf("squashing: %w", err)
	}
	return out, nil
}

// squashLayer writes the diff of img's first nBase layers' merged tree
// against all of img's as a layer blob of the state dir.
func squashLayer(ctx context.Context, img v1.Image, nBase int, docker bool, o builder.Options) (*layer.Layer, error) {
	stateDir := o.StateDir
	if stateDir == "" {
		stateDir = statedir.Default
	}
	st, err := statedir.Open(stateDir)
	if err != nil {
		return nil, fmt.Errorf("squashing: %w", err)
	}
	defer st.Close()
	ls, err := image.LayersWithDiffIDs(img)
	if err != nil {
		return nil, fmt.Errorf("squashing: %w", err)
	}
	// Overlay lowers go top first.
	var dirs []string
	for i, l := range ls {
		dir, err := st.UnpackLayer(ctx, l)
		if err != nil {
			return nil, fmt.Errorf("squashing: layer %d: %w", i+1, err)
		}
		dirs = append([]string{dir}, dirs...)
	}
	tmp, err := st.TempDir("squash-")
	if err != nil {
		return nil, fmt.Errorf("squashing: %w", err)
	}
	defer os.RemoveAll(tmp)
	empty := filepath.Join(tmp, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		return nil, fmt.Errorf("squashing: %w", err)
	}
	// view mounts lowers (plus the empty dir: a read-only overlay needs
	// two) at tmp/name; no lowers is the empty tree itself.
	view := func(name string, lowers []string) (string, error) {
		if len(lowers) == 0 {
			return empty, nil
		}
		p := filepath.Join(tmp, name)
		if err := os.Mkdir(p, 0o755); err != nil {
			return "", err
		}
		if err := overlay.Mount(p, overlay.Options{Lowers: append(lowers[:len(lowers):len(lowers)], empty)}); err != nil {
			return "", err
		}
		return p, nil
	}
	var mounted []string
	defer func() {
		for _, m := range mounted {
			if err := unix.Unmount(m, 0); err != nil {
				unix.Unmount(m, unix.MNT_DETACH)
			}
		}
	}()
	base, err := view("base", dirs[len(dirs)-nBase:])
	if err != nil {
		return nil, fmt.Errorf("squashing: mounting the base: %w", err)
	}
	if base != empty {
		mounted = append(mounted, base)
	}
	final, err := view("final", dirs)
	if err != nil {
		return nil, fmt.Errorf("squashing: mounting the built image: %w", err)
	}
	mounted = append(mounted, final)

	p := o.Compat
	if p.Name == "" {
		p = compat.Default
	}
	dopts := []diff.Option{diff.WithCompat(p)}
	if e := o.SourceDateEpoch; e != nil {
		dopts = append(dopts, diff.WithMtimeClamp(*e))
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	warn := func(format string, args ...any) { fmt.Fprintf(progress, "[WARNING]: "+format+"\n", args...) }
	l, err := layer.Write(ctx, st.BlobDir(), diff.Naive(base, final, warn),
		layer.WithDockerMediaTypes(docker), layer.WithDiffOptions(dopts...))
	if err != nil {
		return nil, fmt.Errorf("squashing: writing the layer: %w", err)
	}
	return l, nil
}
