package buildcache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/layercommit/layercommit/builder"
	"github.com/layercommit/layercommit/export"
	"github.com/layercommit/layercommit/internal/atomicfile"
	"github.com/layercommit/layercommit/internal/verify"
	"github.com/layercommit/layercommit/layer"
	"github.com/layercommit/layercommit/statedir"
)

// ErrNoCache is returned by Import when the ref or dir holds no cache.
var ErrNoCache = errors.New("no build cache there")

// Export writes the steps of a build to spec: with spec.Max every
// stage's, else the target stage's. The layer blobs are read from the
// state dir at stateDir (held shared meanwhile, so gc cannot remove
// them); a blob the registry already has is not uploaded again, and one
// that a registry image of mountFrom (pushed by the same build) has in
// another repository of the same registry is mounted from there
// (?mount=&from=). opts give the registry's credentials and transport.
func Export(ctx context.Context, spec Spec, stateDir string, res *builder.Result, mountFrom []string, opts ...export.Option) error {
	var steps []step
	at := map[string]int{}
	for _, r := range res.Steps {
		if !spec.Max && r.Stage != res.Target {
			continue
		}
		s := step{Key: r.Key, Config: r.Entry.Config, Layer: r.Entry.Layer}
		if i, ok := at[r.Key]; ok {
			steps[i] = s
			continue
		}
		at[r.Key] = len(steps)
		steps = append(steps, s)
	}
	enc, err := encode(steps)
	if err != nil {
		return fmt.Errorf("exporting build cache to %s: %w", spec, err)
	}
	st, err := statedir.Open(stateDir)
	if err != nil {
		return err
	}
	defer st.Close()
	var blobs []*layer.Layer
	for _, d := range enc.layers {
		l, ok := st.BlobLayer(d)
		if !ok {
			return fmt.Errorf("exporting build cache to %s: layer %s is not in the state dir", spec, d.Digest)
		}
		blobs = append(blobs, l)
	}
	switch spec.Type {
	case "registry":
		err = exportRegistry(ctx, spec.Ref, enc, blobs, mountFrom, export.RemoteOptions(ctx, opts...))
	case "local":
		err = exportLocal(spec.Dir, enc, blobs)
	default:
		err = fmt.Errorf("unsupported cache type %q", spec.Type)
	}
	if err != nil {
		return fmt.Errorf("exporting build cache to %s: %w", spec, err)
	}
	return nil
}

// rawManifest is a manifest to PUT as it is.
type rawManifest []byte

func (m rawManifest) RawManifest() ([]byte, error)        { return m, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

func exportRegistry(ctx context.Context, ref string, enc *encoded, blobs []*layer.Layer, mountFrom []string, ro []remote.Option) error {
	r, err := export.ParseRemote(ref)
	if err != nil {
		return err
	}
	var from name.Reference
	for _, m := range mountFrom {
		if mr, err := export.ParseRemote(m); err == nil && mr.Context().RegistryStr() == r.Context().RegistryStr() &&
			mr.Context().RepositoryStr() != r.Context().RepositoryStr() {
			from = mr
			break
		}
	}
	// Blobs first (remote.WriteLayer HEADs each one and skips what the
	// repository has, else mounts it from the pushed image's repository),
	// then the tag in one manifest PUT.
	for _, l := range blobs {
		var up v1.Layer = l
		if from != nil {
			up = &remote.MountableLayer{Layer: l, Reference: from}
		}
		if err := remote.WriteLayer(r.Context(), up, ro...); err != nil {
			return fmt.Errorf("uploading layer: %w", err)
		}
	}
	if err := remote.WriteLayer(r.Context(), static.NewLayer(enc.index, ConfigMediaType), ro...); err != nil {
		return fmt.Errorf("uploading cache index: %w", err)
	}
	if err := remote.Put(r, rawManifest(enc.manifest), ro...); err != nil {
		return fmt.Errorf("writing cache manifest: %w", err)
	}
	return nil
}

// layoutBlob is the path of a blob in the OCI layout dir.
func layoutBlob(dir string, d v1.Hash) string {
	return filepath.Join(dir, "blobs", d.Algorithm, d.Hex)
}

func exportLocal(dir string, enc *encoded, blobs []*layer.Layer) error {
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return err
	}
	for _, l := range blobs {
		d, _ := l.Digest()
		size, _ := l.Size()
		p := layoutBlob(dir, d)
		if verify.File(p, d, size) == nil {
			continue
		}
		if err := copyBlob(p, l); err != nil {
			return err
		}
	}
	ih, _, _ := v1.SHA256(bytes.NewReader(enc.index))
	for h, b := range map[v1.Hash][]byte{ih: enc.index, enc.digest: enc.manifest} {
		if err := atomicfile.WriteFile(layoutBlob(dir, h), b, 0o644); err != nil {
			return err
		}
	}
	ix := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{{
		MediaType: types.OCIManifestSchema1, Digest: enc.digest, Size: int64(len(enc.manifest)), ArtifactType: ArtifactType,
	}}}
	b, err := json.Marshal(ix)
	if err != nil {
		return err
	}
	// One rename: a reader sees the old cache or this one.
	return atomicfile.WriteFile(filepath.Join(dir, "index.json"), b, 0o644)
}

func copyBlob(p string, l *layer.Layer) error {
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := atomicfile.Create(p, 0o644)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := io.Copy(f, rc); err != nil {
		return fmt.Errorf("copying blob to %s: %w", p, err)
	}
	return f.Commit()
}

// Source is an imported cache (a builder.CacheSource).
type Source struct {
	spec    Spec
	entries map[string]*statedir.CacheEntry
	open    func(ctx context.Context, d v1.Hash) (io.ReadCloser, error)
}

var _ builder.CacheSource = (*Source)(nil)

// Import reads the cache manifest and index at spec (both checked
// against their digests); layer blobs are fetched only when a step hits
// (OpenBlob). A ref or dir with no cache is ErrNoCache.
func Import(ctx context.Context, spec Spec, opts ...export.Option) (*Source, error) {
	var (
		src *Source
		err error
	)
	switch spec.Type {
	case "registry":
		src, err = importRegistry(ctx, spec, export.RemoteOptions(ctx, opts...))
	case "local":
		src, err = importLocal(spec)
	default:
		err = fmt.Errorf("unsupported cache type %q", spec.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("importing build cache from %s: %w", spec, err)
	}
	return src, nil
}

func importRegistry(ctx context.Context, spec Spec, ro []remote.Option) (*Source, error) {
	r, err := export.ParseRemote(spec.Ref)
	if err != nil {
		return nil, err
	}
	desc, err := remote.Get(r, ro...)
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
			return nil, ErrNoCache
		}
		return nil, err
	}
	repo := r.Context()
	src := &Source{spec: spec, open: func(ctx context.Context, d v1.Hash) (io.ReadCloser, error) {
		l, err := remote.Layer(repo.Digest(d.String()), append(ro, remote.WithContext(ctx))...)
		if err != nil {
			return nil, err
		}
		return l.Compressed()
	}}
	return src, src.load(ctx, desc.Manifest)
}

func importLocal(spec Spec) (*Source, error) {
	b, err := os.ReadFile(filepath.Join(spec.Dir, "index.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoCache
	}
	if err != nil {
		return nil, err
	}
	var ix v1.IndexManifest
	if err := json.Unmarshal(b, &ix); err != nil {
		return nil, fmt.Errorf("reading index.json: %w", err)
	}
	dir := spec.Dir
	src := &Source{spec: spec, open: func(_ context.Context, d v1.Hash) (io.ReadCloser, error) {
		return os.Open(layoutBlob(dir, d))
	}}
	for _, m := range ix.Manifests {
		if m.ArtifactType != ArtifactType {
			continue
		}
		if m.Size < 0 || m.Size > maxIndexSize {
			return nil, fmt.Errorf("cache manifest of %d bytes refused", m.Size)
		}
		raw, err := src.read(context.Background(), m.Digest, m.Size)
		if err != nil {
			return nil, err
		}
		return src, src.load(context.Background(), raw)
	}
	return nil, ErrNoCache
}

// read reads a small blob whole, checked against d and size.
func (s *Source) read(ctx context.Context, d v1.Hash, size int64) ([]byte, error) {
	rc, err := s.open(ctx, d)
	if err != nil {
		return nil, err
	}
	b, err := verify.ReadAll(rc, d, size)
	if err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", d, err)
	}
	return b, nil
}

func (s *Source) load(ctx context.Context, raw []byte) error {
	m, err := decodeManifest(raw)
	if err != nil {
		return err
	}
	b, err := s.read(ctx, m.Config.Digest, m.Config.Size)
	if err != nil {
		return fmt.Errorf("reading cache index: %w", err)
	}
	s.entries, err = decodeIndex(b, m)
	return err
}

// Len is the number of steps the cache holds.
func (s *Source) Len() int { return len(s.entries) }

// Lookup returns a copy of the entry under key.
func (s *Source) Lookup(key string) (*statedir.CacheEntry, bool) {
	e, ok := s.entries[key]
	if !ok {
		return nil, false
	}
	c := *e
	return &c, true
}

// OpenBlob opens the compressed blob desc names; the caller verifies it.
func (s *Source) OpenBlob(ctx context.Context, desc layer.Descriptor) (io.ReadCloser, error) {
	return s.open(ctx, desc.Digest)
}

func (s *Source) String() string { return s.spec.String() }
