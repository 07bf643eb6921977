package containerdstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Labels this package writes (containerd pkg/labels, core/metadata/gc.go,
// moby daemon/containerd).
const (
	// LabelUncompressed is a layer blob's diffID.
	LabelUncompressed = "containerd.io/uncompressed"
	// LabelGCRefContent prefixes a label whose value is a digest the
	// labelled blob keeps alive.
	LabelGCRefContent = "containerd.io/gc.ref.content"
	// DanglingPrefix names Docker's records of untagged images.
	DanglingPrefix = "moby-dangling@"
	// LabelCRIManaged marks an image of namespace k8s.io as CRI's.
	LabelCRIManaged = "io.cri-containerd.image"
)

// Blob is a blob to store besides the image's own.
type Blob struct {
	Digest v1.Hash
	Size   int64
	// Open returns the blob's content; the caller of Open closes it.
	Open   func() (io.ReadCloser, error)
	Labels map[string]string
}

// WriteOptions say where and under which names WriteImage records an
// image.
type WriteOptions struct {
	// Namespace is the containerd namespace (created if missing).
	Namespace string
	// Names are full image names (docker.io/library/foo:latest). In
	// NamespaceDocker an image with no names is recorded as Docker
	// records an untagged commit: moby-dangling@<manifest digest>.
	Names []string
	// ImageLabels are set on each image record written (e.g. Docker's
	// org.mobyproject.image.parent).
	ImageLabels map[string]string
	// ConfigLabels are added to the config blob's record (e.g. Docker's
	// containerd.io/gc.ref.content.moby/container.config).
	ConfigLabels map[string]string
	// Extra are further blobs stored with their labels in the same
	// transaction; something must reference them (ConfigLabels) or
	// containerd's gc collects them.
	Extra []Blob
	// Now is the time recorded as created/updated (time.Now if zero).
	Now time.Time
}

// WriteImage stores img's layers, config and manifest in the content
// store and records them and the image names in meta.db, so that a
// (re)started containerd lists the image and keeps it through gc:
// layers get containerd.io/uncompressed, the manifest gc references to
// the config and layers (Docker's spelling ...content.0, .1... in
// namespace moby, containerd's ...content.config, .l.<i> elsewhere).
//
// It refuses with ErrRunning when a daemon holds meta.db, and holds the
// lock itself from before the first blob to after the one transaction
// that writes every record; blobs are written first (temp file, fsync,
// rename). If the transaction fails, no record changed and the blobs
// written are unreferenced, for containerd's next gc to remove.
//
// In NamespaceDocker names follow Docker's tag handling (moby
// daemon/containerd createOrReplaceImage, softImageDelete): a name that
// pointed at another image hands over, and that image, if no other name
// points at it, is kept as moby-dangling@<its digest>; the new image's
// dangling record is removed once it has a name. Elsewhere a name that
// exists is updated in place, keeping its created time.
//
// It returns the manifest's descriptor, the image record's target.
func (s *Store) WriteImage(img v1.Image, o WriteOptions) (v1.Descriptor, error) {
	if o.Namespace == "" {
		return v1.Descriptor{}, errors.New("writing an image into containerd: no namespace")
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC()
	man, err := img.Manifest()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("reading manifest: %w", err)
	}
	rawMan, err := img.RawManifest()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("reading manifest: %w", err)
	}
	manDigest, err := img.Digest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	mt, err := img.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	target := v1.Descriptor{MediaType: mt, Digest: manDigest, Size: int64(len(rawMan))}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("reading config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return v1.Descriptor{}, err
	}
	if len(layers) != len(man.Layers) {
		return v1.Descriptor{}, fmt.Errorf("%w: image has %d layers, its manifest %d", ErrCorrupt, len(layers), len(man.Layers))
	}

	db, err := s.openForWrite()
	if err != nil {
		return v1.Descriptor{}, err
	}
	defer db.Close()
	s.removeTemps()

	type rec struct {
		d      v1.Hash
		size   int64
		labels map[string]string
	}
	var recs []rec
	manLabels := map[string]string{}
	docker := o.Namespace == NamespaceDocker
	for i, l := range layers {
		desc := man.Layers[i]
		diffID, err := l.DiffID()
		if err != nil {
			return v1.Descriptor{}, fmt.Errorf("layer %d: %w", i, err)
		}
		if err := s.writeBlob(desc.Digest, desc.Size, l.Compressed); err != nil {
			return v1.Descriptor{}, fmt.Errorf("storing layer %s: %w", desc.Digest, err)
		}
		recs = append(recs, rec{desc.Digest, desc.Size, map[string]string{LabelUncompressed: diffID.String()}})
		if docker {
			manLabels[fmt.Sprintf("%s.%d", LabelGCRefContent, i+1)] = desc.Digest.String()
		} else {
			manLabels[fmt.Sprintf("%s.l.%d", LabelGCRefContent, i)] = desc.Digest.String()
		}
	}
	if docker {
		manLabels[LabelGCRefContent+".0"] = man.Config.Digest.String()
	} else {
		manLabels[LabelGCRefContent+".config"] = man.Config.Digest.String()
	}
	for _, b := range []struct {
		d   v1.Hash
		raw []byte
	}{{man.Config.Digest, rawCfg}, {manDigest, rawMan}} {
		raw := b.raw
		if err := s.writeBlob(b.d, int64(len(raw)), func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil }); err != nil {
			return v1.Descriptor{}, fmt.Errorf("storing blob %s: %w", b.d, err)
		}
	}
	recs = append(recs, rec{man.Config.Digest, int64(len(rawCfg)), o.ConfigLabels}, rec{manDigest, int64(len(rawMan)), manLabels})
	for _, b := range o.Extra {
		if err := s.writeBlob(b.Digest, b.Size, b.Open); err != nil {
			return v1.Descriptor{}, fmt.Errorf("storing blob %s: %w", b.Digest, err)
		}
		recs = append(recs, rec{b.Digest, b.Size, b.Labels})
	}

	imageLabels := o.ImageLabels
	if o.Namespace == NamespaceKubernetes && imageLabels[LabelCRIManaged] == "" {
		// The mark of images the CRI plugin manages, which
		// `ctr -n k8s.io images import` sets too (seen in its meta.db).
		imageLabels = maps.Clone(imageLabels)
		if imageLabels == nil {
			imageLabels = map[string]string{}
		}
		imageLabels[LabelCRIManaged] = "managed"
	}
	names := o.Names
	if len(names) == 0 {
		if !docker {
			return v1.Descriptor{}, fmt.Errorf("writing an image into containerd namespace %s: no name", o.Namespace)
		}
		names = []string{DanglingPrefix + manDigest.String()}
	}
	err = updateDB(s.metaDB(), db, func(tx *bolt.Tx) error {
		v1b := tx.Bucket(keyV1)
		if v1b == nil {
			return fmt.Errorf("%w: %s has no v1 schema (has containerd ever run on %s?)", ErrLayout, s.metaDB(), s.Root)
		}
		nsb, err := v1b.CreateBucketIfNotExists([]byte(o.Namespace))
		if err != nil {
			return err
		}
		blobs, err := createBuckets(nsb, keyContent, keyBlob)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if err := putContent(blobs, r.d, r.size, r.labels, now); err != nil {
				return fmt.Errorf("recording blob %s: %w", r.d, err)
			}
		}
		ib, err := nsb.CreateBucketIfNotExists(keyImages)
		if err != nil {
			return err
		}
		for _, name := range names {
			if err := putName(ib, name, target, imageLabels, now, docker); err != nil {
				return fmt.Errorf("recording image %s: %w", name, err)
			}
		}
		if docker && !strings.HasPrefix(names[0], DanglingPrefix) {
			if err := ib.DeleteBucket([]byte(DanglingPrefix + manDigest.String())); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("recording image %s in %s: %w", manDigest, s.metaDB(), err)
	}
	return target, nil
}

// removeTemps removes the temp blobs of interrupted writes; the caller
// holds meta.db's lock, which every writer takes first.
func (s *Store) removeTemps() {
	m, _ := filepath.Glob(filepath.Join(s.ContentDir(), "blobs", "sha256", tempPrefix+"*"))
	for _, p := range m {
		os.Remove(p)
	}
}

func createBuckets(b *bolt.Bucket, keys ...[]byte) (*bolt.Bucket, error) {
	var err error
	for _, k := range keys {
		if b, err = b.CreateBucketIfNotExists(k); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// putContent writes or updates the content record of d: size, times
// (created kept when it exists) and labels (ours over existing ones), as
// containerd's content store writes it (core/metadata/content.go
// writeInfo).
func putContent(blobs *bolt.Bucket, d v1.Hash, size int64, labels map[string]string, now time.Time) error {
	b, err := blobs.CreateBucketIfNotExists([]byte(d.String()))
	if err != nil {
		return err
	}
	created, err := readTime(b, keyCreatedAt)
	if err != nil || b.Get(keyCreatedAt) == nil {
		created = now
	}
	merged := readLabels(b)
	if merged == nil {
		merged = map[string]string{}
	}
	for k, v := range labels {
		merged[k] = v
	}
	if err := putTimes(b, created, now); err != nil {
		return err
	}
	if err := putLabels(b, merged); err != nil {
		return err
	}
	return b.Put(keySize, varint(size))
}

// putName points the image record name at target.
func putName(images *bolt.Bucket, name string, target v1.Descriptor, labels map[string]string, now time.Time, docker bool) error {
	created := now
	if old := images.Bucket([]byte(name)); old != nil {
		var cur Image
		cur.Name = name
		if err := readImage(old, &cur); err != nil {
			return err
		}
		if cur.Target.Digest == target.Digest {
			// Docker: an existing name already on the image is left as
			// it is (createOrReplaceImage).
			if docker {
				return nil
			}
			created = cur.Created
		} else if docker && !strings.HasPrefix(name, DanglingPrefix) {
			if err := keepDangling(images, name, cur, now); err != nil {
				return err
			}
		} else if !docker {
			// containerd's image Update keeps the created time.
			created = cur.Created
		}
		if err := images.DeleteBucket([]byte(name)); err != nil {
			return err
		}
	}
	b, err := images.CreateBucket([]byte(name))
	if err != nil {
		return err
	}
	if err := putTimes(b, created, now); err != nil {
		return err
	}
	if err := putLabels(b, labels); err != nil {
		return err
	}
	tb, err := b.CreateBucket(keyTarget)
	if err != nil {
		return err
	}
	for _, kv := range [][2][]byte{
		{keyDigest, []byte(target.Digest.String())},
		{keyMediaType, []byte(target.MediaType)},
		{keySize, varint(target.Size)},
	} {
		if err := tb.Put(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

// keepDangling records Docker's moby-dangling@ image for cur, which name
// stops naming, when no other record points at cur's target (moby
// softImageDelete, ensureDanglingImage: the labels but the name ones).
func keepDangling(images *bolt.Bucket, name string, cur Image, now time.Time) error {
	others := false
	err := images.ForEachBucket(func(k []byte) error {
		if string(k) == name {
			return nil
		}
		tb := bucket2(images, k, keyTarget)
		if tb != nil && string(tb.Get(keyDigest)) == cur.Target.Digest.String() {
			others = true
		}
		return nil
	})
	if err != nil || others {
		return err
	}
	dname := DanglingPrefix + cur.Target.Digest.String()
	labels := map[string]string{}
	for k, v := range cur.Labels {
		if k != "io.containerd.image.name" && k != "org.opencontainers.image.ref.name" {
			labels[k] = v
		}
	}
	return putName(images, dname, cur.Target, labels, now, true)
}

func putTimes(b *bolt.Bucket, created, updated time.Time) error {
	for _, kv := range []struct {
		k []byte
		t time.Time
	}{{keyCreatedAt, created}, {keyUpdatedAt, updated}} {
		v, err := kv.t.MarshalBinary()
		if err != nil {
			return err
		}
		if err := b.Put(kv.k, v); err != nil {
			return err
		}
	}
	return nil
}

// putLabels replaces b's labels bucket, leaving none when labels is empty
// and skipping empty values, as containerd's boltutil.WriteLabels does.
func putLabels(b *bolt.Bucket, labels map[string]string) error {
	if b.Bucket(keyLabels) != nil {
		if err := b.DeleteBucket(keyLabels); err != nil {
			return err
		}
	}
	if len(labels) == 0 {
		return nil
	}
	lb, err := b.CreateBucket(keyLabels)
	if err != nil {
		return err
	}
	for k, v := range labels {
		if v == "" {
			continue
		}
		if err := lb.Put([]byte(k), []byte(v)); err != nil {
			return err
		}
	}
	return nil
}

func varint(i int64) []byte {
	b := make([]byte, binary.MaxVarintLen64)
	return b[:binary.PutVarint(b, i)]
}
