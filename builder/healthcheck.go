package builder

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
)

// HEALTHCHECK --start-interval is Healthcheck.StartInterval in the image
// config (moby's and BuildKit's HealthcheckConfig); go-containerregistry's
// v1.HealthConfig has no such field, so a config holding one is written
// here, from the parsed config plus the interval, and read back from the
// raw JSON.

// startInterval is Healthcheck.StartInterval of img's config (0 if none).
func startInterval(img v1.Image) (time.Duration, error) {
	raw, err := img.RawConfigFile()
	if err != nil {
		return 0, err
	}
	return rawStartInterval(raw)
}

func rawStartInterval(raw []byte) (time.Duration, error) {
	var c struct {
		Config struct {
			Healthcheck *struct{ StartInterval time.Duration }
		} `json:"config"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return 0, fmt.Errorf("reading the config's Healthcheck: %w", err)
	}
	if c.Config.Healthcheck == nil {
		return 0, nil
	}
	return c.Config.Healthcheck.StartInterval, nil
}

// withConfig is img with config cf, as mutate.ConfigFile makes it, and
// with Healthcheck.StartInterval si when cf has a Healthcheck and si is
// not 0.
func withConfig(img v1.Image, cf *v1.ConfigFile, si time.Duration) (v1.Image, error) {
	img, err := mutate.ConfigFile(img, cf)
	if err != nil || si == 0 || cf.Config.Healthcheck == nil {
		return img, err
	}
	// The outer fields shadow the embedded ones of their JSON names:
	// the config is cf's, its Healthcheck with StartInterval after
	// v1.HealthConfig's fields.
	type health struct {
		v1.HealthConfig
		StartInterval time.Duration `json:",omitempty"`
	}
	type config struct {
		v1.Config
		Healthcheck *health `json:",omitempty"`
	}
	type file struct {
		v1.ConfigFile
		Config config `json:"config"`
	}
	raw, err := json.Marshal(file{ConfigFile: *cf, Config: config{Config: cf.Config,
		Healthcheck: &health{HealthConfig: *cf.Config.Healthcheck, StartInterval: si}}})
	if err != nil {
		return nil, fmt.Errorf("writing the config: %w", err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	m = m.DeepCopy()
	if m.Config.Digest, m.Config.Size, err = v1.SHA256(bytes.NewReader(raw)); err != nil {
		return nil, err
	}
	rm, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return &rawConfigImage{Image: img, raw: raw, manifest: m, rawManifest: rm}, nil
}

// rawConfigImage is an image whose config is raw (and the manifest m,
// naming it); layers come from the embedded image.
type rawConfigImage struct {
	v1.Image
	raw, rawManifest []byte
	manifest         *v1.Manifest
}

var _ v1.Image = (*rawConfigImage)(nil)

func (i *rawConfigImage) RawConfigFile() ([]byte, error) { return i.raw, nil }

func (i *rawConfigImage) ConfigName() (v1.Hash, error) { return i.manifest.Config.Digest, nil }

func (i *rawConfigImage) ConfigFile() (*v1.ConfigFile, error) {
	return v1.ParseConfigFile(bytes.NewReader(i.raw))
}

func (i *rawConfigImage) Manifest() (*v1.Manifest, error) { return i.manifest.DeepCopy(), nil }

func (i *rawConfigImage) RawManifest() ([]byte, error) { return i.rawManifest, nil }

func (i *rawConfigImage) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(i.rawManifest))
	return h, err
}

func (i *rawConfigImage) Size() (int64, error) { return int64(len(i.rawManifest)), nil }

// LayerByDigest serves the config blob itself (as partial does) and the
// embedded image's layers.
func (i *rawConfigImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	if h == i.manifest.Config.Digest {
		return partial.ConfigLayer(i)
	}
	return i.Image.LayerByDigest(h)
}
