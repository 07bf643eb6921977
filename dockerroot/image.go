package dockerroot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// WithRawConfig returns base with l appended (l nil or empty: nothing
// appended) and raw as its exact config bytes, so that the image ID is
// sha256(raw). The manifest is computed only when asked for.
func WithRawConfig(base v1.Image, l v1.Layer, raw []byte) (v1.Image, error) {
	img := base
	if l != nil {
		var err error
		if img, err = mutate.Append(base, mutate.Addendum{Layer: l}); err != nil {
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
