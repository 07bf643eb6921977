package image

import (
	"bytes"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// WithRawManifest is an image whose manifest and config are exactly the
// bytes given, so that its digest (the image ID of containerd-based
// stores) is sha256(manifest), with its layer blobs taken from layers
// (each the blob one of the manifest's layer descriptors names, by
// digest). Every layer the manifest lists must be among them, and the
// manifest's config descriptor must name config: a mismatch is an error
// here, not a broken image later.
func WithRawManifest(manifest, config []byte, layers []v1.Layer) (v1.Image, error) {
	m, err := v1.ParseManifest(bytes.NewReader(manifest))
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	if m.Config.Digest != digestOf(config) || m.Config.Size != int64(len(config)) {
		return nil, fmt.Errorf("manifest names config %s (%d bytes), not the one given", m.Config.Digest, m.Config.Size)
	}
	byDigest := map[v1.Hash]v1.Layer{}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		byDigest[d] = l
	}
	for _, d := range m.Layers {
		if _, ok := byDigest[d.Digest]; !ok {
			return nil, fmt.Errorf("manifest lists layer %s, which is not given", d.Digest)
		}
	}
	return partial.CompressedToImage(&rawManifestCore{manifest: manifest, config: config, mt: m.MediaType, layers: byDigest})
}

func digestOf(b []byte) v1.Hash {
	h, _, _ := v1.SHA256(bytes.NewReader(b))
	return h
}

type rawManifestCore struct {
	manifest, config []byte
	mt               types.MediaType
	layers           map[v1.Hash]v1.Layer
}

func (c *rawManifestCore) RawConfigFile() ([]byte, error)      { return c.config, nil }
func (c *rawManifestCore) RawManifest() ([]byte, error)        { return c.manifest, nil }
func (c *rawManifestCore) MediaType() (types.MediaType, error) { return c.mt, nil }

func (c *rawManifestCore) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := c.layers[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("image has no layer %s", h)
}
