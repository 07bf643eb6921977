package commit

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/image"
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
	// The diffIDs come from the config: UnpackLayer checks each stream
	// against its diffID anyway.
	layers, err := image.LayersWithDiffIDs(base)
	if err != nil {
		return nil, nil, fmt.Errorf("squashing: base: %w", err)
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
		dir, err := st.UnpackLayer(ctx, layers[i])
		if err != nil {
			release()
			return nil, nil, fmt.Errorf("squashing: base layer %d: %w", i+1, err)
		}
		dirs = append(dirs, dir)
	}
	return diff.Squash(dirs), release, nil
}
