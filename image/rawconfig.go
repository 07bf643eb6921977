package image

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// WithRawConfig returns base with l appended (l nil or empty: nothing
// appended) and raw as its exact config bytes, so that the image ID is
// sha256(raw). The manifest is computed only when asked for.
func WithRawConfig(base v1.Image, l v1.Layer, raw []byte) (v1.Image, error) {
	var ls []v1.Layer
	if l != nil {
		ls = []v1.Layer{l}
	}
	return WithRawConfigLayers(base, ls, raw)
}

// WithRawConfigLayers is WithRawConfig with several layers, bottom first
// (a split change set); raw must list all of them.
func WithRawConfigLayers(base v1.Image, ls []v1.Layer, raw []byte) (v1.Image, error) {
	img := base
	for _, l := range ls {
		var err error
		if img, err = mutate.Append(img, mutate.Addendum{Layer: l}); err != nil {
			return nil, fmt.Errorf("appending layer: %w", err)
		}
	}
	return &rawConfigImage{Image: img, raw: raw}, nil
}

type rawConfigImage struct {
	v1.Image
	raw []byte

	once     sync.Once
	manifest *v1.Manifest
	rawMan   []byte
	err      error
}

func (i *rawConfigImage) RawConfigFile() ([]byte, error) { return i.raw, nil }

func (i *rawConfigImage) ConfigFile() (*v1.ConfigFile, error) {
	return v1.ParseConfigFile(bytes.NewReader(i.raw))
}

func (i *rawConfigImage) ConfigName() (v1.Hash, error) {
	s := sha256.Sum256(i.raw)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}, nil
}

func (i *rawConfigImage) compute() {
	i.once.Do(func() {
		m, err := i.Image.Manifest()
		if err != nil {
			i.err = err
			return
		}
		m = m.DeepCopy()
		m.Config.Digest, _ = i.ConfigName()
		m.Config.Size = int64(len(i.raw))
		i.manifest = m
		i.rawMan, i.err = json.Marshal(m)
	})
}

func (i *rawConfigImage) Manifest() (*v1.Manifest, error) {
	i.compute()
	return i.manifest, i.err
}

func (i *rawConfigImage) RawManifest() ([]byte, error) {
	i.compute()
	return i.rawMan, i.err
}

func (i *rawConfigImage) Digest() (v1.Hash, error) {
	i.compute()
	if i.err != nil {
		return v1.Hash{}, i.err
	}
	s := sha256.Sum256(i.rawMan)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}, nil
}

func (i *rawConfigImage) Size() (int64, error) {
	i.compute()
	return int64(len(i.rawMan)), i.err
}

// OCI returns img with OCI media types for its manifest, config and layers,
// keeping the config bytes (and so the image ID) and the layer blobs, as
// skopeo copy does when it writes an OCI layout. skopeo and umoci do not
// read Docker-typed manifests from an OCI layout. An image that already
// has OCI types is returned as it is.
func OCI(img v1.Image) (v1.Image, error) {
	mt, err := img.MediaType()
	if err != nil {
		return nil, err
	}
	if mt == types.OCIManifestSchema1 {
		return img, nil
	}
	if mt != types.DockerManifestSchema2 {
		return nil, fmt.Errorf("cannot convert a %s image to OCI", mt)
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return nil, err
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	var adds []mutate.Addendum
	for _, l := range layers {
		lmt, err := l.MediaType()
		if err != nil {
			return nil, err
		}
		switch lmt {
		case types.DockerLayer:
			lmt = types.OCILayer
		case types.DockerUncompressedLayer:
			lmt = types.OCIUncompressedLayer
		case types.DockerForeignLayer:
			lmt = types.OCIRestrictedLayer
		}
		adds = append(adds, mutate.Addendum{Layer: l, MediaType: lmt})
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	out, err := mutate.Append(base, adds...)
	if err != nil {
		return nil, err
	}
	return &rawConfigImage{Image: out, raw: raw}, nil
}
