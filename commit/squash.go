package commit

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/statedir"
)

// squashSource is the merged file system of base's layers with upper on
// top (diff.Squash): a layer with an overlay dir of its own (a Docker data
// root's) is read there; the others are unpacked into (or reused from)
// the state dir, opened only then. The returned func releases it.
func squashSource(ctx context.Context, base v1.Image, upper, stateDir string) (diff.Source, func(), error) {
	if upper == "" {
		return nil, nil, fmt.Errorf("--squash needs the upper dir")
	}
	dirs := []string{upper}
	if base == nil {
		return diff.Squash(dirs), func() {}, nil
	}
	layers, err := base.Layers()
	if err != nil {
		return nil, nil, fmt.Errorf("squashing: reading base layers: %w", err)
	}
	if len(layers) == 0 {
		return diff.Squash(dirs), func() {}, nil
	}
	cf, err := base.ConfigFile()
	if err != nil {
		return nil, nil, fmt.Errorf("squashing: reading base config: %w", err)
	}
	if len(cf.RootFS.DiffIDs) != len(layers) {
		return nil, nil, fmt.Errorf("squashing: base config lists %d diffIDs for %d layers", len(cf.RootFS.DiffIDs), len(layers))
	}
	// A Docker data root's layers are overlay dirs already: used as they
	// are, with no state dir.
	var st *statedir.Dir
	release := func() {
		if st != nil {
			st.Close()
		}
	}
	for i := len(layers) - 1; i >= 0; i-- {
		if od, ok := layers[i].(interface{ OverlayDir() (string, error) }); ok {
			if dir, err := od.OverlayDir(); err == nil {
				dirs = append(dirs, dir)
				continue
			}
		}
		if st == nil {
			if st, err = statedir.Open(stateDir); err != nil {
				return nil, nil, fmt.Errorf("squashing: %w", err)
			}
		}
		dir, err := st.UnpackLayer(ctx, withDiffID(layers[i], cf.RootFS.DiffIDs[i]))
		if err != nil {
			release()
			return nil, nil, fmt.Errorf("squashing: base layer %d: %w", i+1, err)
		}
		dirs = append(dirs, dir)
	}
	return diff.Squash(dirs), release, nil
}

// knownDiffID is a layer whose diffID is the one its image's config
// lists. Without it, a layer of some sources (an OCI layout) computes its
// diffID by decompressing the whole blob, a full extra read before the
// unpack; UnpackLayer checks the stream against the diffID anyway, so a
// config that lies fails there.
type knownDiffID struct {
	v1.Layer
	diffID v1.Hash
}

func (l knownDiffID) DiffID() (v1.Hash, error) { return l.diffID, nil }

// withDiffID wraps l in knownDiffID, unless l has abilities a wrapper
// would hide (a Docker data root layer's OverlayDir, which UnpackLayer
// uses as the dir itself).
func withDiffID(l v1.Layer, d v1.Hash) v1.Layer {
	if _, ok := l.(interface{ OverlayDir() (string, error) }); ok {
		return l
	}
	return knownDiffID{Layer: l, diffID: d}
}
