package export

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/layercommit/layercommit/image"

	"github.com/layercommit/layercommit/internal/atomicfile"
	"github.com/layercommit/layercommit/internal/crashpoint"
	"github.com/layercommit/layercommit/internal/flock"
	"github.com/layercommit/layercommit/internal/verify"
)

func init() { register(oci{}) }

// refNameAnnotation tags a manifest in an OCI layout's index.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// oci is an OCI image layout: oci:DIR[:TAG]. As a source without TAG the
// layout must hold exactly one image; as a destination TAG defaults to
// "latest" and replaces only the manifest tagged so.
type oci struct{}

func (oci) Name() string { return "oci" }

func splitOCI(rest string) (dir, tag string, err error) {
	dir, tag, _ = strings.Cut(rest, ":")
	if dir == "" {
		return "", "", errors.New("oci: wants a directory, as in oci:DIR[:TAG]")
	}
	return dir, tag, nil
}

func (oci) Open(_ context.Context, rest string, o *Options) (v1.Image, error) {
	dir, tag, err := splitOCI(rest)
	if err != nil {
		return nil, err
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var found []v1.Descriptor
	for _, d := range im.Manifests {
		if tag == "" || d.Annotations[refNameAnnotation] == tag {
			found = append(found, d)
		}
	}
	switch {
	case len(found) == 0 && tag != "":
		return nil, fmt.Errorf("no image tagged %q in the layout (tags: %s)", tag, strings.Join(ociTags(im), ", "))
	case len(found) == 0:
		return nil, errors.New("the layout holds no image")
	case len(found) > 1 && tag == "":
		return nil, fmt.Errorf("the layout holds %d images; name one by tag (tags: %s)", len(found), strings.Join(ociTags(im), ", "))
	}
	d := found[len(found)-1]
	if d.MediaType.IsIndex() {
		child, err := idx.ImageIndex(d.Digest)
		if err != nil {
			return nil, err
		}
		return pickPlatform(child, o.Platform)
	}
	img, err := idx.Image(d.Digest)
	if err != nil {
		return nil, err
	}
	return check(img)
}

func ociTags(im *v1.IndexManifest) []string {
	var tags []string
	for _, d := range im.Manifests {
		if t := d.Annotations[refNameAnnotation]; t != "" {
			tags = append(tags, t)
		}
	}
	return tags
}

// pickPlatform returns the image for p from an index.
func pickPlatform(idx v1.ImageIndex, p v1.Platform) (v1.Image, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.Satisfies(p) {
			img, err := idx.Image(d.Digest)
			if err != nil {
				return nil, err
			}
			return check(img)
		}
	}
	return nil, fmt.Errorf("no image for platform %s in the index", p.String())
}

func (oci) Destination(_ context.Context, rest string, _ *Options) (Destination, error) {
	dir, tag, err := splitOCI(rest)
	if err != nil {
		return nil, err
	}
	if tag == "" {
		tag = "latest"
	}
	return newOCIDest(dir, func(im *v1.IndexManifest, desc v1.Descriptor) {
		kept := im.Manifests[:0]
		for _, m := range im.Manifests {
			if m.Annotations[refNameAnnotation] != tag {
				kept = append(kept, m)
			}
		}
		desc.Annotations = map[string]string{refNameAnnotation: tag}
		im.Manifests = append(kept, desc)
	})
}

// placeFunc puts the descriptor of a written manifest into the index (as
// read under the index lock); the index is then replaced atomically.
type placeFunc func(im *v1.IndexManifest, desc v1.Descriptor)

// newOCIDest prepares writing to the layout dir (created if missing),
// with place deciding how the manifest enters index.json.
func newOCIDest(dir string, place placeFunc) (*ociDest, error) {
	if err := checkLayoutDir(dir); err != nil {
		return nil, err
	}
	_, statErr := os.Stat(dir)
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return nil, fmt.Errorf("creating layout: %w", err)
	}
	// Make the new directories durable before anything is renamed in.
	for _, d := range []string{filepath.Join(dir, "blobs"), dir, filepath.Dir(filepath.Clean(dir))} {
		if err := atomicfile.SyncDir(d); err != nil {
			return nil, err
		}
	}
	// Blobs written from now on may be unreferenced until Write tags
	// them: hold the use lock so that gc leaves them alone.
	use, err := lockDir(filepath.Join(dir, "blobs"), flock.Shared, "OCI layout "+dir)
	if err != nil {
		return nil, err
	}
	d := &ociDest{dir: dir, place: place, fresh: errors.Is(statErr, os.ErrNotExist), use: use}
	// oci-layout first, so that the dir is a layout to other writers.
	if err := d.writeFile("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`), true); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// checkLayoutDir accepts a missing or empty dir, an OCI layout, or a
// layout another writer is creating (only blobs/ and temp files yet).
func checkLayoutDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err == nil {
		return nil
	}
	for _, e := range ents {
		if e.Name() != "blobs" && !strings.HasPrefix(e.Name(), atomicfile.TempPrefix) {
			return fmt.Errorf("%s is neither empty nor an OCI layout (no oci-layout file)", dir)
		}
	}
	return nil
}

type ociDest struct {
	dir   string
	place placeFunc
	// fresh is set when the layout dir did not exist; Close removes it
	// again unless an image was written.
	fresh, written bool
	// use is the layout's use lock (shared), held until Close.
	use *flock.Lock
}

func (d *ociDest) BlobDir() string  { return filepath.Join(d.dir, "blobs", "sha256") }
func (d *ociDest) PrefersOCI() bool { return true }

// Close removes a layout dir this destination created if no image was
// written to it and no other writer uses it, and releases the use lock.
func (d *ociDest) Close() error {
	defer d.use.Unlock()
	if d.fresh && !d.written {
		d.fresh = false
		if d.use != nil && d.use.TryUpgrade() {
			return os.RemoveAll(d.dir)
		}
	}
	return nil
}

// Write adds every blob of img that the layout lacks, then the image's
// manifest to index.json as place says (for oci:, under the tag,
// replacing the entry of the same tag only). Blobs are written under temp names and checked against their
// digests before being renamed; index.json is replaced atomically last.
func (d *ociDest) Write(ctx context.Context, img v1.Image) error {
	// skopeo and umoci read only OCI-typed manifests from a layout.
	img, err := image.OCI(img)
	if err != nil {
		return fmt.Errorf("converting to OCI media types: %w", err)
	}
	if err := d.writeFile("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`), true); err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("listing layers: %w", err)
	}
	for _, l := range layers {
		if err := ctx.Err(); err != nil {
			return err
		}
		dg, err := l.Digest()
		if err != nil {
			return err
		}
		size, err := l.Size()
		if err != nil {
			return err
		}
		// A layer blob that layer.Write just put under its digest in
		// this layout was hashed as it was written: no second read.
		p := filepath.Join(d.BlobDir(), dg.Hex)
		if own, ok := l.(interface {
			Path() string
			Created() bool
		}); ok && own.Created() && own.Path() == p {
			continue
		}
		if err := d.writeBlob(dg, size, l.Compressed); err != nil {
			return err
		}
		crashpoint.At("oci-layer-blob")
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	if err := d.writeBlob(cfgName, int64(len(raw)), bytesOpener(raw)); err != nil {
		return err
	}
	manifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	desc, err := partial.Descriptor(img)
	if err != nil {
		return err
	}
	if err := d.writeBlob(desc.Digest, desc.Size, bytesOpener(manifest)); err != nil {
		return err
	}
	crashpoint.At("oci-before-index")
	if err := d.tag1(*desc); err != nil {
		return err
	}
	d.written = true
	return nil
}

func bytesOpener(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// writeBlob copies a blob into the layout unless a file of its digest and
// size is there already and holds those bytes (two writers of one digest
// both succeed). A file under the blob's name that does not verify is
// replaced.
func (d *ociDest) writeBlob(dg v1.Hash, size int64, open func() (io.ReadCloser, error)) error {
	if dg.Algorithm != "sha256" || len(dg.Hex) != 64 || size < 0 {
		return fmt.Errorf("refusing blob %s of size %d", dg, size)
	}
	p := filepath.Join(d.BlobDir(), dg.Hex)
	// A blob just renamed into place by layer.Write is rehashed too: a
	// second read of a layer is the price of never trusting a name.
	if verify.File(p, dg, size) == nil {
		return nil
	}
	rc, err := open()
	if err != nil {
		return fmt.Errorf("reading blob %s: %w", dg, err)
	}
	defer rc.Close()
	f, err := atomicfile.Create(p, 0o644)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := io.Copy(f, verify.Reader(rc, dg, size)); err != nil {
		return fmt.Errorf("writing blob %s: %w", dg, err)
	}
	crashpoint.At("oci-blob-temp")
	return f.Commit()
}

// writeFile writes a file at the layout's top, or keeps it if keep is set
// and it exists.
func (d *ociDest) writeFile(name string, b []byte, keep bool) error {
	p := filepath.Join(d.dir, name)
	if _, err := os.Stat(p); err == nil && keep {
		return nil
	}
	return atomicfile.WriteFile(p, b, 0o644)
}

// tag1 puts desc into index.json by d.place, keeping every other entry.
func (d *ociDest) tag1(desc v1.Descriptor) error {
	desc.Platform = nil
	desc.ArtifactType = ""
	desc.Annotations = nil
	return updateIndex(d.dir, func(im *v1.IndexManifest) error {
		d.place(im, desc)
		return nil
	})
}

// updateIndex lets change edit the index.json of the layout dir (empty if
// missing) and replaces the file atomically unless change fails. It holds
// the index lock from reading index.json to replacing it, so that
// concurrent writers of other tags lose none.
func updateIndex(dir string, change func(im *v1.IndexManifest) error) error {
	lk, err := lockDir(dir, flock.Exclusive, "OCI layout "+dir)
	if err != nil {
		return err
	}
	defer lk.Unlock()
	im, err := readIndex(dir)
	if err != nil {
		return err
	}
	if err := change(im); err != nil {
		return err
	}
	out, err := json.Marshal(im)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, "index.json"), out, 0o644)
}

// readIndex reads the index.json of the layout dir; a missing one is an
// empty index.
func readIndex(dir string) (*v1.IndexManifest, error) {
	im := &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	switch {
	case err == nil:
		if err := json.Unmarshal(b, im); err != nil {
			return nil, fmt.Errorf("reading index.json: %w", err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("reading index.json: %w", err)
	}
	return im, nil
}
