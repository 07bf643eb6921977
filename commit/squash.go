package commit

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/statedir"
)

// squashSource is the merged file system of base's layers with upper on
// top (diff.Squash), the layers unpacked into (or reused from) the state
// dir. The returned func releases the state dir.
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
	st, err := statedir.Open(stateDir)
	if err != nil {
		return nil, nil, fmt.Errorf("squashing: %w", err)
	}
	for i := len(layers) - 1; i >= 0; i-- {
		dir, err := st.UnpackLayer(ctx, withDiffID(layers[i], cf.RootFS.DiffIDs[i]))
		if err != nil {
			st.Close()
			return nil, nil, fmt.Errorf("squashing: base layer %d: %w", i+1, err)
		}
		dirs = append(dirs, dir)
	}
	return diff.Squash(dirs), st.Close, nil
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
