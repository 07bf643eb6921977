package containerdstore

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// manifestLimit bounds a manifest, index or config read into memory.
const manifestLimit = 64 << 20

// V1Image returns the image record name of ns as a v1.Image read from the
// content store: its target manifest, or the manifest for platform in its
// target index. Every blob is digest-checked as it is read (Blob).
func (s *Store) V1Image(ns, name string, platform v1.Platform) (v1.Image, error) {
	rec, err := s.Image(ns, name)
	if err != nil {
		return nil, err
	}
	desc := rec.Target
	if desc.MediaType.IsIndex() {
		raw, err := s.readAll(desc)
		if err != nil {
			return nil, err
		}
		idx, err := v1.ParseIndexManifest(bytesReader(raw))
		if err != nil {
			return nil, fmt.Errorf("%w: index %s: %w", ErrCorrupt, desc.Digest, err)
		}
		found := false
		for _, m := range idx.Manifests {
			if m.MediaType.IsImage() && (m.Platform == nil || m.Platform.Satisfies(platform)) {
				desc, found = m, true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("%w: image %s has no manifest for %s", ErrNotFound, name, platform)
		}
	}
	if !desc.MediaType.IsImage() {
		return nil, fmt.Errorf("image %s: target %s has media type %s", name, desc.Digest, desc.MediaType)
	}
	return s.ImageByManifest(desc)
}

func (s *Store) readAll(d v1.Descriptor) ([]byte, error) {
	if d.Size < 0 || d.Size > manifestLimit {
		return nil, fmt.Errorf("%w: blob %s claims %d bytes", ErrCorrupt, d.Digest, d.Size)
	}
	r, err := s.Blob(d.Digest, d.Size)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// storeImage is the compressed core of an image in the content store.
type storeImage struct {
	s        *Store
	mt       types.MediaType
	manifest []byte
	m        *v1.Manifest
	config   []byte

	once    sync.Once
	diffIDs []v1.Hash
}

var _ partial.CompressedImageCore = (*storeImage)(nil)

func (i *storeImage) RawConfigFile() ([]byte, error)      { return i.config, nil }
func (i *storeImage) MediaType() (types.MediaType, error) { return i.mt, nil }
func (i *storeImage) RawManifest() ([]byte, error)        { return i.manifest, nil }

func (i *storeImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for n, l := range i.m.Layers {
		if l.Digest == h {
			sl := &storeLayer{s: i.s, desc: l}
			// The config (read digest-checked) names each layer's
			// diffID: reading a large layer again to learn it is
			// what a commit on it must not do.
			if d, ok := i.diffID(n); ok {
				return &storeLayerDiffID{storeLayer: sl, diffID: d}, nil
			}
			return sl, nil
		}
	}
	if i.m.Config.Digest == h {
		return &storeLayer{s: i.s, desc: i.m.Config}, nil
	}
	return nil, fmt.Errorf("%w: blob %s in manifest", ErrNotFound, h)
}

// diffID is the n-th layer's diffID as the config lists it.
func (i *storeImage) diffID(n int) (v1.Hash, bool) {
	i.once.Do(func() {
		var c struct {
			RootFS struct {
				DiffIDs []v1.Hash `json:"diff_ids"`
			} `json:"rootfs"`
		}
		if json.Unmarshal(i.config, &c) == nil && len(c.RootFS.DiffIDs) == len(i.m.Layers) {
			i.diffIDs = c.RootFS.DiffIDs
		}
	})
	if n < len(i.diffIDs) {
		return i.diffIDs[n], true
	}
	return v1.Hash{}, false
}

// storeLayerDiffID is a storeLayer whose diffID the config gives.
type storeLayerDiffID struct {
	*storeLayer
	diffID v1.Hash
}

func (l *storeLayerDiffID) DiffID() (v1.Hash, error) { return l.diffID, nil }

// storeLayer is a layer blob of the content store, read again on each
// Compressed call.
type storeLayer struct {
	s    *Store
	desc v1.Descriptor
}

func (l *storeLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *storeLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *storeLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }
func (l *storeLayer) Compressed() (io.ReadCloser, error)  { return l.s.Blob(l.desc.Digest, l.desc.Size) }
