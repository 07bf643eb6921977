package containerdstore

import (
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
)

// ImageByManifest is the image whose manifest desc names, read from the
// content store as V1Image reads a record's target (every blob
// digest-checked as it is read). Docker's containerd image store records
// a container's image this way (config.v2.json ImageManifest).
func (s *Store) ImageByManifest(desc v1.Descriptor) (v1.Image, error) {
	if !desc.MediaType.IsImage() {
		return nil, fmt.Errorf("manifest %s has media type %q, not an image manifest's", desc.Digest, desc.MediaType)
	}
	raw, err := s.readAll(desc)
	if err != nil {
		return nil, err
	}
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest %s: %w", ErrCorrupt, desc.Digest, err)
	}
	cfg, err := s.readAll(m.Config)
	if err != nil {
		return nil, err
	}
	return partial.CompressedToImage(&storeImage{s: s, mt: desc.MediaType, manifest: raw, m: &m, config: cfg})
}
