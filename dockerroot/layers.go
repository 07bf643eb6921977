package dockerroot

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/internal/tarsplit"
	"github.com/layercommit/layercommit/internal/verify"
)

// Layer is one layer of an image as the data root stores it.
type Layer struct {
	DiffID  v1.Hash
	ChainID v1.Hash
	// Parent is the chainID of the layer below; zero for the first.
	Parent v1.Hash
	// CacheID names the overlay2 directory.
	CacheID string
	// Size is layerdb's size file (apparent bytes of the diff dir).
	Size int64
	// Link is the short name in overlay2/l/.
	Link string
	// Lower is the overlay2 lower file: l/<link> entries, nearest first.
	Lower []string
	// DiffDir is overlay2/<cache-id>/diff.
	DiffDir string
	// TarSplit is layerdb's tar-split.json.gz, "" when absent.
	TarSplit string
}

func (r *Root) layerDir(chain v1.Hash) string {
	return filepath.Join(r.imageDir(), "layerdb", chain.Algorithm, chain.Hex)
}

// Layer reads the layerdb entry of chainID and its overlay2 directory,
// checking that the entry records diffID.
func (r *Root) Layer(chainID, diffID v1.Hash) (Layer, error) {
	l := Layer{DiffID: diffID, ChainID: chainID}
	dir := r.layerDir(chainID)
	got, err := readSmall(filepath.Join(dir, "diff"))
	if err != nil {
		return l, fmt.Errorf("layer %s (diffID %s) is missing from layerdb: %w", chainID, diffID, err)
	}
	if got != diffID.String() {
		return l, fmt.Errorf("%w: layerdb %s records diffID %s, the image says %s", ErrCorrupt, chainID, got, diffID)
	}
	if l.CacheID, err = readSmall(filepath.Join(dir, "cache-id")); err != nil {
		return l, fmt.Errorf("reading cache-id of layer %s: %w", chainID, err)
	}
	if !validCacheID(l.CacheID) {
		return l, fmt.Errorf("%w: layer %s has cache-id %q", ErrCorrupt, chainID, l.CacheID)
	}
	if s, err := readSmall(filepath.Join(dir, "size")); err == nil {
		l.Size, _ = strconv.ParseInt(s, 10, 64)
	}
	if p, err := readSmall(filepath.Join(dir, "parent")); err == nil {
		if l.Parent, err = v1.NewHash(p); err != nil {
			return l, fmt.Errorf("%w: parent of layer %s: %v", ErrCorrupt, chainID, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "tar-split.json.gz")); err == nil {
		l.TarSplit = filepath.Join(dir, "tar-split.json.gz")
	}
	od := r.path("overlay2", l.CacheID)
	l.DiffDir = filepath.Join(od, "diff")
	if fi, err := os.Stat(l.DiffDir); err != nil || !fi.IsDir() {
		return l, fmt.Errorf("layer %s: overlay2 directory %s is missing", chainID, l.DiffDir)
	}
	l.Link, _ = readSmall(filepath.Join(od, "link"))
	if lower, err := readSmall(filepath.Join(od, "lower")); err == nil && lower != "" {
		l.Lower = strings.Split(lower, ":")
	}
	return l, nil
}

// validCacheID accepts the overlay2 directory names dockerd makes: hex,
// optionally with "-init".
func validCacheID(s string) bool {
	s = strings.TrimSuffix(s, "-init")
	return len(s) >= 12 && len(s) <= 64 && hexRE.MatchString(s)
}

// Layers reads every layer of the image whose config lists diffIDs.
func (r *Root) Layers(diffIDs []v1.Hash) ([]Layer, error) {
	chains := diff.ChainIDs(diffIDs)
	out := make([]Layer, len(diffIDs))
	for i := range diffIDs {
		l, err := r.Layer(chains[i], diffIDs[i])
		if err != nil {
			return nil, err
		}
		out[i] = l
	}
	return out, nil
}

// Open returns the layer's uncompressed tar: reassembled from tar-split
// and the diff dir when layerdb has tar-split (the exact original bytes),
// otherwise re-tarred from the diff dir with profile. Either way the
// stream fails at EOF unless its sha256 is the diffID.
func (l Layer) Open(ctx context.Context, profile compat.Profile) (io.ReadCloser, error) {
	if l.TarSplit == "" {
		rc := diff.Reader(ctx, diff.Overlay(l.DiffDir), diff.WithCompat(profile))
		return verify.Reader(rc, l.DiffID, verify.UnknownSize), nil
	}
	rc, err := tarsplit.Open(l.TarSplit, l.DiffDir, l.DiffID)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", l.ChainID, err)
	}
	return rc, nil
}

// ErrDigestMismatch is returned at EOF by a layer stream whose sha256 is
// not its diffID: the one sentinel of internal/verify, named here for
// library users.
var ErrDigestMismatch = verify.ErrDigestMismatch

// ImageConfig is the part of a config the store needs.
type imageConfig struct {
	RootFS struct {
		DiffIDs []v1.Hash `json:"diff_ids"`
	} `json:"rootfs"`
}

// imageLayers reads image id's verified config and its layer chain.
func (r *Root) imageLayers(id v1.Hash) ([]byte, []Layer, error) {
	raw, err := r.RawConfig(id)
	if err != nil {
		return nil, nil, err
	}
	var cfg imageConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, nil, fmt.Errorf("%w: config of image %s: %v", ErrCorrupt, id, err)
	}
	layers, err := r.Layers(cfg.RootFS.DiffIDs)
	if err != nil {
		return nil, nil, fmt.Errorf("image %s: %w", id, err)
	}
	return raw, layers, nil
}

// Image is an image of the data root as a v1.Image, with its exact config
// bytes and layers served from the diff dirs.
func (r *Root) Image(ctx context.Context, id v1.Hash, profile compat.Profile) (v1.Image, error) {
	raw, layers, err := r.imageLayers(id)
	if err != nil {
		return nil, err
	}
	byDiff := map[v1.Hash]Layer{}
	for _, l := range layers {
		byDiff[l.DiffID] = l
	}
	core := &rootImage{ctx: ctx, raw: raw, layers: byDiff, profile: profile}
	img, err := partial.UncompressedToImage(core)
	if err != nil {
		return nil, err
	}
	out := &dirImage{Image: img, layers: map[v1.Hash]v1.Layer{}}
	for _, l := range layers {
		out.diffIDs = append(out.diffIDs, l.DiffID)
		pl, err := partial.UncompressedToLayer(&rootLayer{img: core, l: l})
		if err != nil {
			return nil, err
		}
		out.layers[l.DiffID] = &dirLayer{Layer: pl, dir: l.DiffDir}
	}
	return out, nil
}

// dirImage serves the layers of a data-root image as dirLayers, so that
// consumers that can use an overlay-form directory as is (the builder's
// lowers) find it by type assertion.
type dirImage struct {
	v1.Image
	diffIDs []v1.Hash
	layers  map[v1.Hash]v1.Layer
}

func (i *dirImage) Layers() ([]v1.Layer, error) {
	out := make([]v1.Layer, len(i.diffIDs))
	for n, d := range i.diffIDs {
		out[n] = i.layers[d]
	}
	return out, nil
}

func (i *dirImage) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	if l, ok := i.layers[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("image has no layer with diffID %s", h)
}

// dirLayer is a layer that also exists unpacked, in overlay form, in
// Docker's overlay2/<cache-id>/diff.
type dirLayer struct {
	v1.Layer
	dir string
}

// OverlayDir returns the layer's overlay2 diff dir. Callers must only
// read it: it belongs to dockerd.
func (l *dirLayer) OverlayDir() (string, error) { return l.dir, nil }

type rootImage struct {
	ctx     context.Context
	raw     []byte
	layers  map[v1.Hash]Layer
	profile compat.Profile
}

func (i *rootImage) RawConfigFile() ([]byte, error) { return i.raw, nil }

func (i *rootImage) MediaType() (types.MediaType, error) { return types.DockerManifestSchema2, nil }

func (i *rootImage) LayerByDiffID(h v1.Hash) (partial.UncompressedLayer, error) {
	l, ok := i.layers[h]
	if !ok {
		return nil, fmt.Errorf("image has no layer with diffID %s", h)
	}
	return &rootLayer{img: i, l: l}, nil
}

type rootLayer struct {
	img *rootImage
	l   Layer
}

func (l *rootLayer) DiffID() (v1.Hash, error) { return l.l.DiffID, nil }

func (l *rootLayer) Uncompressed() (io.ReadCloser, error) { return l.l.Open(l.img.ctx, l.img.profile) }

func (l *rootLayer) MediaType() (types.MediaType, error) { return types.DockerLayer, nil }

// ImageInfo describes an image of the data root for inspect.
type ImageInfo struct {
	ID     v1.Hash
	Tags   []string
	Config json.RawMessage
	Layers []Layer
}

// Describe resolves ref and reads its config and layer chain.
func (r *Root) Describe(ref string) (*ImageInfo, error) {
	id, err := r.ResolveImage(ref)
	if err != nil {
		return nil, err
	}
	raw, layers, err := r.imageLayers(id)
	if err != nil {
		return nil, err
	}
	info := &ImageInfo{ID: id, Config: raw, Layers: layers}
	repos, err := r.ReadRepositories()
	if err != nil {
		return nil, err
	}
	for _, refs := range repos.Repositories {
		for k, v := range refs {
			if v == id.String() {
				info.Tags = append(info.Tags, k)
			}
		}
	}
	sort.Strings(info.Tags)
	return info, nil
}
