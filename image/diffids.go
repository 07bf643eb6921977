package image

import (
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// LayersWithDiffIDs returns img's layers, bottom first, each answering
// DiffID with the diffID img's config lists for it. Without it, a layer
// of some sources (an OCI layout) computes its diffID by decompressing
// its whole blob, a full extra read before an unpack that reads it again.
// Use it only where the layer's stream is checked against that diffID
// when read (statedir.Dir.UnpackLayer checks to the end), so that a
// config that lies fails there. A layer with an overlay dir of its own
// (a Docker data root's OverlayDir) is returned as it is, since a wrapper
// would hide that ability.
func LayersWithDiffIDs(img v1.Image) ([]v1.Layer, error) {
	ls, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("reading layers: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	if len(cf.RootFS.DiffIDs) != len(ls) {
		return nil, fmt.Errorf("config lists %d diffIDs for %d layers", len(cf.RootFS.DiffIDs), len(ls))
	}
	out := make([]v1.Layer, len(ls))
	for i, l := range ls {
		out[i] = l
		if _, ok := l.(interface{ OverlayDir() (string, error) }); !ok {
			out[i] = knownDiffID{Layer: l, diffID: cf.RootFS.DiffIDs[i]}
		}
	}
	return out, nil
}

// knownDiffID is a layer whose diffID is the one its image's config
// lists.
type knownDiffID struct {
	v1.Layer
	diffID v1.Hash
}

func (l knownDiffID) DiffID() (v1.Hash, error) { return l.diffID, nil }
