package layer

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/internal/atomicfile"
	"github.com/layercommit/layercommit/internal/crashpoint"
	"github.com/layercommit/layercommit/internal/verify"
)

// Counters are updated while a layer is written, so that a progress
// display can poll them from another goroutine.
type Counters struct {
	Files      atomic.Int64 // changes written
	TarBytes   atomic.Int64 // uncompressed bytes
	BlobBytes  atomic.Int64 // compressed bytes written to the blob
	Uploaded   atomic.Int64 // bytes sent to a registry (set by export)
	UploadSize atomic.Int64 // bytes to send (set by export)
}

// Option configures Write.
type Option func(*options)

type options struct {
	compression Compression
	level       *int
	docker      bool
	diffOpts    []diff.Option
	counters    *Counters
}

// WithCompression picks the compressor and its level; a nil level means
// the compressor's default. Gzip at its default level when not given.
func WithCompression(c Compression, level *int) Option {
	return func(o *options) { o.compression, o.level = c, level }
}

// WithDockerMediaTypes gives the layer a Docker v2 schema 2 media type
// instead of an OCI one.
func WithDockerMediaTypes(docker bool) Option { return func(o *options) { o.docker = docker } }

// WithDiffOptions passes options (profile, mtime clamp) to diff.Write.
func WithDiffOptions(opts ...diff.Option) Option {
	return func(o *options) { o.diffOpts = append(o.diffOpts, opts...) }
}

// WithCounters makes Write update c as it goes.
func WithCounters(c *Counters) Option { return func(o *options) { o.counters = c } }

// Layer is a layer blob in a file named by its digest. It is a value that
// can be read any number of times; every read is size-limited and
// digest-checked.
type Layer struct {
	path        string
	digest      v1.Hash
	diffID      v1.Hash
	size        int64
	tarSize     int64
	mediaType   types.MediaType
	compression Compression
	annotations map[string]string
	created     bool
}

var _ v1.Layer = (*Layer)(nil)

// Write walks src once and writes its compressed layer blob into dir as a
// file named by the blob digest's hex. The blob is written under a temp
// name in dir and renamed when complete; if dir already holds a blob of
// that digest, the old file is kept and the new one dropped. On
// error nothing is left in dir.
func Write(ctx context.Context, dir string, src diff.Source, opts ...Option) (*Layer, error) {
	o := newOptions(opts)
	return o.write(dir, func(w io.Writer) (v1.Hash, int64, error) {
		dopts := append(append([]diff.Option(nil), o.diffOpts...),
			diff.WithProgress(func(diff.Change) { o.counters.Files.Add(1) }))
		// diff.Write hashes the tar it writes (the diffID) in the same pass.
		return diff.Write(ctx, w, src, dopts...)
	})
}

// Compress writes the blob of l's tar compressed as opts say (gzip, zstd
// or none; the seekable formats change the tar) into dir, as Write does:
// l's tar is read once and must hash to l's diffID. With the options a
// Write of the same change set had, the blob is the one that Write would
// have made (the compressors are pinned), so a layer kept uncompressed
// and compressed later has the same digest as one compressed at once.
func Compress(ctx context.Context, dir string, l v1.Layer, opts ...Option) (*Layer, error) {
	o := newOptions(opts)
	if o.compression == Estargz || o.compression == ZstdChunked {
		return nil, fmt.Errorf("compressing a layer as %s: only a change set can be written so (Write)", o.compression)
	}
	want, err := l.DiffID()
	if err != nil {
		return nil, fmt.Errorf("compressing a layer: %w", err)
	}
	return o.write(dir, func(w io.Writer) (v1.Hash, int64, error) {
		rc, err := l.Uncompressed()
		if err != nil {
			return v1.Hash{}, 0, fmt.Errorf("reading layer %s: %w", want, err)
		}
		if _, ours := l.(*Layer); !ours {
			// Ours checks its tar against its diffID itself.
			rc = verify.Reader(rc, want, verify.UnknownSize)
		}
		defer rc.Close()
		n, err := io.Copy(w, readerCtx{ctx, rc})
		if err != nil {
			return v1.Hash{}, 0, fmt.Errorf("reading layer %s: %w", want, err)
		}
		return want, n, nil
	})
}

// readerCtx stops reading once ctx is done.
type readerCtx struct {
	ctx context.Context
	r   io.Reader
}

func (r readerCtx) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

func newOptions(opts []Option) *options {
	o := &options{compression: Gzip}
	for _, opt := range opts {
		opt(o)
	}
	if o.counters == nil {
		o.counters = &Counters{}
	}
	return o
}

// write writes the blob of the tar that tarTo writes (returning its
// diffID and size) into dir.
func (o *options) write(dir string, tarTo func(io.Writer) (v1.Hash, int64, error)) (*Layer, error) {
	level := o.compression.DefaultLevel()
	if o.level != nil {
		level = *o.level
	}
	if err := o.compression.checkLevel(level); err != nil {
		return nil, err
	}
	mt, err := o.compression.MediaType(o.docker)
	if err != nil {
		return nil, err
	}
	f, err := atomicfile.Create(filepath.Join(dir, "layer"), 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating layer blob: %w", err)
	}
	defer f.Abort()

	// tar -> compressor -> MultiWriter(file, digest hash, counter).
	dh := sha256.New()
	blob := &counter{n: &o.counters.BlobBytes}
	// The profile (in the diff options) picks the gzip implementation.
	zw, err := o.compression.compressor(io.MultiWriter(f, dh, blob), level, diff.ProfileOf(o.diffOpts...))
	if err != nil {
		return nil, fmt.Errorf("starting %s compressor: %w", o.compression, err)
	}
	tarCount := &counter{n: &o.counters.TarBytes}
	diffID, tarSize, err := tarTo(io.MultiWriter(zw, tarCount))
	if cerr := zw.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("finishing %s stream: %w", o.compression, cerr)
	}
	if err != nil {
		return nil, fmt.Errorf("writing layer: %w", err)
	}
	var annotations map[string]string
	if s, ok := zw.(sealer); ok {
		sealed := s.seal()
		if sealed.diffID != nil {
			diffID = *sealed.diffID
		}
		tarSize += sealed.extraTar
		annotations = sealed.annotations
	}
	l := &Layer{
		digest:      verify.Sum(dh),
		diffID:      diffID,
		size:        blob.total,
		tarSize:     tarSize,
		mediaType:   mt,
		compression: o.compression,
		annotations: annotations,
	}
	l.path = filepath.Join(dir, l.digest.Hex)
	crashpoint.At("layer-blob-temp")
	// A file under the digest name is trusted only if it holds the blob;
	// one that does not is replaced.
	if verify.File(l.path, l.digest, l.size) == nil {
		return l, nil // already there: the deferred Abort drops ours
	}
	if err := f.Chmod(0o644); err != nil {
		return nil, fmt.Errorf("writing layer blob %s: %w", l.digest, err)
	}
	// Commit renames to f's destination; point it at the digest name.
	if err := commitAs(f, l.path); err != nil {
		return nil, fmt.Errorf("writing layer blob %s: %w", l.digest, err)
	}
	l.created = true
	crashpoint.At("layer-blob-renamed")
	return l, nil
}

// commitAs syncs f and renames it to dest.
func commitAs(f *atomicfile.File, dest string) error {
	if err := f.Sync(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), dest); err != nil {
		return err
	}
	f.Abort() // closes; the temp name no longer exists
	return atomicfile.SyncDir(filepath.Dir(dest))
}

// Path is the blob file.
func (l *Layer) Path() string { return l.path }

// Created reports whether Write made the blob file (rather than finding it).
func (l *Layer) Created() bool { return l.created }

// Empty reports whether the layer has no changes (its diffID is that of
// an empty tar).
func (l *Layer) Empty() bool { return l.diffID == diff.EmptyDiffID }

// Remove deletes the blob file if Write created it.
func (l *Layer) Remove() error {
	if !l.created {
		return nil
	}
	l.created = false
	if err := os.Remove(l.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing layer blob %s: %w", l.digest, err)
	}
	return nil
}

// Digest is the sha256 of the compressed blob.
func (l *Layer) Digest() (v1.Hash, error) { return l.digest, nil }

// DiffID is the sha256 of the uncompressed tar (for estargz, of the
// decompressed stream: the tar and the TOC entry after it).
func (l *Layer) DiffID() (v1.Hash, error) { return l.diffID, nil }

// Size is the size of the compressed blob.
func (l *Layer) Size() (int64, error) { return l.size, nil }

// UncompressedSize is the size of the tar (for estargz, of the
// decompressed stream).
func (l *Layer) UncompressedSize() int64 { return l.tarSize }

// Annotations are what the layer's descriptor in a manifest must carry
// (the estargz and zstd:chunked TOC locations and digests); nil for the
// other compressions. The caller may not change the map.
func (l *Layer) Annotations() map[string]string { return l.annotations }

// MediaType is the layer's media type.
func (l *Layer) MediaType() (types.MediaType, error) { return l.mediaType, nil }

// Compressed opens the blob. The reader fails with ErrDigestMismatch (or
// ErrSizeMismatch) at the end if the file no longer holds the blob. The
// caller closes it.
func (l *Layer) Compressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, fmt.Errorf("opening layer blob %s: %w", l.digest, err)
	}
	return verify.Reader(f, l.digest, l.size), nil
}

// Uncompressed opens the blob and decompresses it, checking both the blob
// digest and the diffID. The caller closes it.
func (l *Layer) Uncompressed() (io.ReadCloser, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	if l.compression == None && l.digest == l.diffID && l.size == l.tarSize {
		// The blob is the tar: Compressed checks it already.
		return rc, nil
	}
	d, err := l.compression.decompressor(rc)
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("decompressing layer blob %s: %w", l.digest, err)
	}
	return verify.Reader(d, l.diffID, l.tarSize, rc), nil
}

// counter counts bytes into a total and an optional shared atomic.
type counter struct {
	total int64
	n     *atomic.Int64
}

func (c *counter) Write(p []byte) (int, error) {
	c.total += int64(len(p))
	if c.n != nil {
		c.n.Add(int64(len(p)))
	}
	return len(p), nil
}
