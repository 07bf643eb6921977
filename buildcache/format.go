package buildcache

import (
	"bytes"
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/layercommit/layercommit/layer"
	"github.com/layercommit/layercommit/statedir"
)

const (
	// ArtifactType is the cache manifest's artifactType.
	ArtifactType = "application/vnd.layercommit.buildcache.v1"
	// ConfigMediaType is the media type of the cache index, the
	// manifest's config blob.
	ConfigMediaType types.MediaType = "application/vnd.layercommit.buildcache.index.v1+json"
	// maxIndexSize bounds the index blob read before it is parsed.
	maxIndexSize = 64 << 20
)

// index is the cache index blob: the steps in the order the build ran
// them.
type index struct {
	SchemaVersion int    `json:"schemaVersion"`
	Steps         []step `json:"steps"`
}

// step is one cache entry under the key the builder computed.
type step struct {
	Key    string            `json:"key"`
	Config json.RawMessage   `json:"config"`
	Layer  *layer.Descriptor `json:"layer,omitempty"`
}

// encoded is a cache ready to write: the index blob, the manifest, and
// the layer blobs it names (distinct, in first-use order).
type encoded struct {
	index    []byte
	manifest []byte
	digest   v1.Hash
	layers   []layer.Descriptor
}

func encode(steps []step) (*encoded, error) {
	ib, err := json.Marshal(index{SchemaVersion: 1, Steps: steps})
	if err != nil {
		return nil, err
	}
	e := &encoded{index: ib}
	ih, _, err := v1.SHA256(bytes.NewReader(ib))
	if err != nil {
		return nil, err
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: ArtifactType,
		Config: v1.Descriptor{MediaType: ConfigMediaType, Digest: ih, Size: int64(len(ib))}, Layers: []v1.Descriptor{}}
	seen := map[v1.Hash]bool{}
	for _, s := range steps {
		if s.Layer == nil || seen[s.Layer.Digest] {
			continue
		}
		seen[s.Layer.Digest] = true
		e.layers = append(e.layers, *s.Layer)
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: s.Layer.MediaType, Digest: s.Layer.Digest, Size: s.Layer.Size})
	}
	if e.manifest, err = json.Marshal(m); err != nil {
		return nil, err
	}
	if e.digest, _, err = v1.SHA256(bytes.NewReader(e.manifest)); err != nil {
		return nil, err
	}
	return e, nil
}

// decodeManifest checks that raw is a cache manifest and returns its
// index descriptor.
func decodeManifest(raw []byte) (*v1.Manifest, error) {
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("reading cache manifest: %w", err)
	}
	if m.Config.MediaType != ConfigMediaType {
		return nil, fmt.Errorf("not a layercommit build cache (config media type %q)", m.Config.MediaType)
	}
	if m.Config.Size < 0 || m.Config.Size > maxIndexSize {
		return nil, fmt.Errorf("cache index of %d bytes refused", m.Config.Size)
	}
	return &m, nil
}

// decodeIndex parses the (verified) index blob into entries by key; a
// step whose layer the manifest does not list is dropped, since a
// registry's gc need not keep its blob.
func decodeIndex(b []byte, m *v1.Manifest) (map[string]*statedir.CacheEntry, error) {
	var ix index
	if err := json.Unmarshal(b, &ix); err != nil {
		return nil, fmt.Errorf("reading cache index: %w", err)
	}
	if ix.SchemaVersion != 1 {
		return nil, fmt.Errorf("cache index schema %d not supported", ix.SchemaVersion)
	}
	listed := map[v1.Hash]int64{}
	for _, l := range m.Layers {
		listed[l.Digest] = l.Size
	}
	out := map[string]*statedir.CacheEntry{}
	for _, s := range ix.Steps {
		if s.Layer != nil {
			if size, ok := listed[s.Layer.Digest]; !ok || size != s.Layer.Size {
				continue
			}
		}
		out[s.Key] = &statedir.CacheEntry{Config: s.Config, Layer: s.Layer}
	}
	return out, nil
}
