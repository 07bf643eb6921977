package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/internal/atomicfile"
	"github.com/layercommit/layercommit/internal/flock"
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
	lock *flock.Lock
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
	l, err := flock.Acquire(dir, flock.Shared, flock.Wait, "state dir "+dir)
	if err != nil {
		return nil, err
	}
	return &state{dir: dir, lock: l}, nil
}

// close releases the state dir's lock.
func (s *state) close() {
	if s != nil {
		s.lock.Unlock()
	}
}

func (s *state) blobDir() string { return filepath.Join(s.dir, "blobs", "sha256") }

func (s *state) layerDir(diffID v1.Hash) string { return filepath.Join(s.dir, "layers", diffID.Hex) }

// tempDir makes a scratch dir that the caller removes.
func (s *state) tempDir(prefix string) (string, error) {
	return os.MkdirTemp(filepath.Join(s.dir, "tmp"), prefix)
}

// blobLayer reopens a layer blob of the state dir from its cache record;
// false when the blob is gone or is not of the recorded size.
func (s *state) blobLayer(d layer.Descriptor) (*layer.Layer, bool) {
	l, err := layer.FromFile(filepath.Join(s.blobDir(), d.Digest.Hex), d)
	return l, err == nil
}

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
	Config json.RawMessage   `json:"config"`
	Layer  *layer.Descriptor `json:"layer,omitempty"`
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
	return atomicfile.WriteFile(s.cachePath(key), b, 0o600)
}

// writeLayer diffs an upper dir into a layer blob in the state dir.
func (s *state) writeLayer(ctx context.Context, upper string, opts ...layer.Option) (*layer.Layer, error) {
	return layer.Write(ctx, s.blobDir(), diff.Overlay(upper), opts...)
}
