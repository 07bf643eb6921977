package builder

import (
	"context"
	"fmt"
	"io/fs"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/layercommit/layercommit/image"
	"github.com/layercommit/layercommit/internal/safepath"
)

// A named context that is a local directory (--build-context NAME=DIR,
// BuildKit's --opt context:NAME=local:NAME with --local NAME=DIR) is the
// same tree wherever it is used, as BuildKit's local source delivers it
// (contextView: its .dockerignore applied, every entry 0:0): mounted by
// RUN --mount=from=NAME (mount_linux.go), copied by COPY --from=NAME
// (localFS) and the root of FROM NAME (localBase).

// localFS is the tree of the local named context name, for COPY --from:
// its view, read like a stage's root.
func (b *build) localFS(name string) (fs.FS, func(), error) {
	view, err := b.contextView(name)
	if err != nil {
		return nil, nil, err
	}
	root, err := safepath.Open(view)
	if err != nil {
		return nil, nil, err
	}
	return rootFS{root}, func() { root.Close() }, nil
}

// localBase is the image FROM NAME starts from when NAME is a local
// named context: BuildKit's empty image (the caller gives it scratch's
// config) with one layer holding the context's tree. The history entry
// is ours: BuildKit writes none for it.
func (b *build) localBase(ctx context.Context, s *stageState, name string) (v1.Image, error) {
	view, err := b.contextView(name)
	if err != nil {
		return nil, err
	}
	l, err := b.st.WriteLayer(ctx, view, b.layerOptions(s)...)
	if err != nil {
		return nil, fmt.Errorf("writing the layer of context %s: %w", name, err)
	}
	img, err := mutate.Append(image.Scratch(!s.docker), mutate.Addendum{Layer: l,
		History: v1.History{Created: v1.Time{Time: b.created()}, CreatedBy: "FROM " + name + " (local build context)"}})
	if err != nil {
		return nil, fmt.Errorf("context %s: %w", name, err)
	}
	return img, nil
}
