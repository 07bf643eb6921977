package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/internal/atomicfile"
	"github.com/layercommit/layercommit/layer"
	"github.com/layercommit/layercommit/unpack"
)

// DefaultStateDir holds unpacked layers, layer blobs and the build cache.
const DefaultStateDir = "/var/lib/layercommit"

// state is the state dir:
//
//	blobs/sha256/<digest>   compressed layer blobs made by builds
//	layers/<diffID>         layers unpacked in overlay form (lowers)
//	cache/<key>.json        build cache entries
//	tmp/                    per-step scratch space
type state struct {
	dir  string
	lock *os.File
}

// openState makes the state dir and holds a shared flock on it until
// close, so that layercommit gc (which takes it exclusive) never cleans a
// state dir a build is using. Builds share it with each other.
func openState(dir string) (*state, error) {
	for _, d := range []string{"blobs/sha256", "layers", "cache", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("making state dir: %w", err)
		}
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("locking state dir: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking state dir %s: %w", dir, err)
	}
	return &state{dir: dir, lock: f}, nil
}

// close releases the state dir's lock.
func (s *state) close() {
	if s != nil && s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
}

func (s *state) blobDir() string { return filepath.Join(s.dir, "blobs", "sha256") }

func (s *state) layerDir(diffID v1.Hash) string { return filepath.Join(s.dir, "layers", diffID.Hex) }

// tempDir makes a scratch dir that the caller removes.
func (s *state) tempDir(prefix string) (string, error) {
	return os.MkdirTemp(filepath.Join(s.dir, "tmp"), prefix)
}

// layerDesc describes a layer blob in the state dir.
type layerDesc struct {
	Digest    v1.Hash         `json:"digest"`
	DiffID    v1.Hash         `json:"diffID"`
	Size      int64           `json:"size"`
	MediaType types.MediaType `json:"mediaType"`
}

// blobLayer is a layer blob in the state dir: a value that can be read any
// number of times, every read digest- and size-checked.
type blobLayer struct {
	d    layerDesc
	path string
}

var _ v1.Layer = (*blobLayer)(nil)

func (s *state) blobLayer(d layerDesc) (*blobLayer, bool) {
	p := filepath.Join(s.blobDir(), d.Digest.Hex)
	fi, err := os.Stat(p)
	if err != nil || fi.Size() != d.Size {
		return nil, false
	}
	return &blobLayer{d: d, path: p}, true
}

func (l *blobLayer) Digest() (v1.Hash, error)            { return l.d.Digest, nil }
func (l *blobLayer) DiffID() (v1.Hash, error)            { return l.d.DiffID, nil }
func (l *blobLayer) Size() (int64, error)                { return l.d.Size, nil }
func (l *blobLayer) MediaType() (types.MediaType, error) { return l.d.MediaType, nil }

// Compressed opens the blob; the caller closes it.
func (l *blobLayer) Compressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, err
	}
	return layer.VerifiedReader(f, l.d.Digest, l.d.Size), nil
}

// Uncompressed opens the blob and decompresses it; the caller closes it.
func (l *blobLayer) Uncompressed() (io.ReadCloser, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	switch l.d.MediaType {
	case types.OCIUncompressedLayer, types.DockerUncompressedLayer:
		return rc, nil
	case types.OCILayerZStd:
		zr, err := zstd.NewReader(rc)
		if err != nil {
			rc.Close()
			return nil, err
		}
		return &readCloser{Reader: zr, close: func() error { zr.Close(); return rc.Close() }}, nil
	}
	zr, err := gzip.NewReader(rc)
	if err != nil {
		rc.Close()
		return nil, err
	}
	return &readCloser{Reader: zr, close: func() error { zr.Close(); return rc.Close() }}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r *readCloser) Close() error { return r.close() }

// overlayDirLayer is the optional ability of a layer that already exists
// as an overlay-form directory (a Docker data root's overlay2/<id>/diff):
// it is used as a lower as is, without unpacking.
type overlayDirLayer interface {
	OverlayDir() (string, error)
}

// unpackLayer returns the overlay-form dir of l, unpacking it into the
// state dir once (content-addressed by diffID).
func (s *state) unpackLayer(ctx context.Context, l v1.Layer) (string, error) {
	if od, ok := l.(overlayDirLayer); ok {
		if dir, err := od.OverlayDir(); err == nil {
			return dir, nil
		}
	}
	d, err := l.DiffID()
	if err != nil {
		return "", err
	}
	dst := s.layerDir(d)
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	tmp, err := s.tempDir("unpack-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	rc, err := l.Uncompressed()
	if err != nil {
		return "", fmt.Errorf("reading layer %s: %w", d, err)
	}
	defer rc.Close()
	h := sha256.New()
	tree := filepath.Join(tmp, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		return "", err
	}
	if _, err := unpack.Apply(ctx, tree, io.TeeReader(rc, h), unpack.WithOverlayForm()); err != nil {
		return "", fmt.Errorf("unpacking layer %s: %w", d, err)
	}
	// Hash to the end so that the diffID covers the whole stream.
	if _, err := io.Copy(h, rc); err != nil {
		return "", fmt.Errorf("reading layer %s: %w", d, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != d.Hex {
		return "", fmt.Errorf("unpacking layer %s: diffID mismatch (got sha256:%s)", d, got)
	}
	return dst, s.adopt(tree, d)
}

// adopt moves an overlay-form dir into the layer store under diffID; if
// one is already there, dir is removed instead.
func (s *state) adopt(dir string, diffID v1.Hash) error {
	dst := s.layerDir(diffID)
	if err := os.Rename(dir, dst); err != nil {
		if _, serr := os.Stat(dst); serr == nil {
			return os.RemoveAll(dir)
		}
		return fmt.Errorf("storing unpacked layer %s: %w", diffID, err)
	}
	return nil
}

// cacheEntry is one build step's result.
type cacheEntry struct {
	Config json.RawMessage `json:"config"`
	Layer  *layerDesc      `json:"layer,omitempty"`
}

func (s *state) cachePath(key string) string { return filepath.Join(s.dir, "cache", key+".json") }

// lookup returns the entry stored under key, if it and its blob exist.
func (s *state) lookup(key string) (*cacheEntry, bool) {
	b, err := os.ReadFile(s.cachePath(key))
	if err != nil {
		return nil, false
	}
	var e cacheEntry
	if json.Unmarshal(b, &e) != nil || len(e.Config) == 0 {
		return nil, false
	}
	if e.Layer != nil {
		if _, ok := s.blobLayer(*e.Layer); !ok {
			return nil, false
		}
	}
	return &e, true
}

func (s *state) store(key string, e *cacheEntry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	f, err := atomicfile.Create(s.cachePath(key), 0o600)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(b); err != nil {
		return err
	}
	return f.Commit()
}

// writeLayer diffs an upper dir into a layer blob in the state dir.
func (s *state) writeLayer(ctx context.Context, upper string, opts ...layer.Option) (*blobLayer, error) {
	l, err := layer.Write(ctx, s.blobDir(), diff.Overlay(upper), opts...)
	if err != nil {
		return nil, err
	}
	d := layerDesc{}
	d.Digest, _ = l.Digest()
	d.DiffID, _ = l.DiffID()
	d.Size, _ = l.Size()
	d.MediaType, _ = l.MediaType()
	return &blobLayer{d: d, path: l.Path()}, nil
}

var _ = errors.New
var _ fs.FS
