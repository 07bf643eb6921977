package image

import (
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/dockerfile"
)

// CommitConfig returns the config docker commit gives a new image: the
// changes applied to a copy of the container's config by
// dockerfile.ApplyChanges, then merged with it (moby's BuildFromConfig
// followed by merge). container is not modified.
func CommitConfig(container v1.Config, changes []string) (v1.Config, error) {
	cfg, err := dockerfile.ApplyChanges(container, changes)
	if err != nil {
		return v1.Config{}, err
	}
	merge(&cfg, &container)
	return cfg, nil
}
