package containersstorage

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/layercommit/layercommit/internal/tarsplit"
)

// Image is image id of the store as a v1.Image: its exact config bytes
// (checked against id) and its layers, each rebuilt from the store's
// tar-split and diff dir as containers/storage exports it and checked
// against its diff digest as it is read, with Docker's media types
// (image.OCI converts them). A layer without tar-split is refused before
// anything is read.
func (s *Store) Image(id string) (v1.Image, error) {
	raw, layers, err := s.ImageConfig(id)
	if err != nil {
		return nil, err
	}
	core := &storeImage{raw: raw, layers: map[v1.Hash]*Layer{}}
	for _, l := range layers {
		if _, err := os.Stat(l.TarSplit); err != nil {
			return nil, fmt.Errorf("%w: layer %s of image %s has no tar-split: %v", ErrCorrupt, l.ID, id, err)
		}
		core.layers[l.DiffDigest] = l
	}
	return partial.UncompressedToImage(core)
}

type storeImage struct {
	raw    []byte
	layers map[v1.Hash]*Layer
}

func (i *storeImage) RawConfigFile() ([]byte, error) { return i.raw, nil }

func (i *storeImage) MediaType() (types.MediaType, error) { return types.DockerManifestSchema2, nil }

func (i *storeImage) LayerByDiffID(h v1.Hash) (partial.UncompressedLayer, error) {
	l, ok := i.layers[h]
	if !ok {
		return nil, fmt.Errorf("image has no layer with diffID %s", h)
	}
	return &storeLayer{l: l}, nil
}

type storeLayer struct{ l *Layer }

func (l *storeLayer) DiffID() (v1.Hash, error) { return l.l.DiffDigest, nil }

func (l *storeLayer) Uncompressed() (io.ReadCloser, error) {
	rc, err := tarsplit.Open(l.l.TarSplit, l.l.DiffDir, l.l.DiffDigest)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", l.l.ID, err)
	}
	return rc, nil
}

func (l *storeLayer) MediaType() (types.MediaType, error) { return types.DockerLayer, nil }

// ResolveImage returns the ID of the image ref names: a full ID, a unique
// ID prefix (at least 3 characters) or a name as podman normalizes it
// (NormalizeName).
func (s *Store) ResolveImage(ref string) (string, error) {
	var recs []imageRecord
	if err := s.readRecords(filepath.Join(s.Root, "overlay-images/images.json"), filepath.Join(s.Root, "overlay-images/images.lock"), &recs); err != nil {
		return "", fmt.Errorf("reading images: %w", err)
	}
	name, _ := NormalizeName(ref)
	var found []string
	for _, r := range recs {
		match := r.ID == ref || (len(ref) >= 3 && strings.HasPrefix(r.ID, ref))
		for _, n := range r.Names {
			match = match || n == ref || n == name
		}
		if match {
			found = append(found, r.ID)
		}
	}
	switch {
	case len(found) == 0:
		return "", fmt.Errorf("%w: no image %q in %s", ErrNotFound, ref, s.Root)
	case len(found) > 1:
		return "", fmt.Errorf("image %q is ambiguous in %s (%d match)", ref, s.Root, len(found))
	}
	return found[0], nil
}
