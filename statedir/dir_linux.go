package statedir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/internal/atomicfile"
	"github.com/layercommit/layercommit/internal/flock"
	"github.com/layercommit/layercommit/internal/userns"
	"github.com/layercommit/layercommit/internal/verify"
	"github.com/layercommit/layercommit/layer"
	"github.com/layercommit/layercommit/unpack"
)

// Dir is a state dir opened by a build. Its methods may be called from
// one goroutine at a time; several processes may have the same state dir
// open at once.
type Dir struct {
	layout
	lock *flock.Lock
	warn func(format string, args ...any)
	// boot is this boot's id (bootID): the mark of the layer dirs
	// published in it.
	boot string
}

// bootID is the running kernel's boot id, "" when it cannot be read.
var bootID = func() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Option configures Open.
type Option func(*Dir)

// WithWarner sends Dir's warnings (a device node of a base layer that a
// user namespace cannot create, skipped) to warn instead of standard
// error.
func WithWarner(warn func(format string, args ...any)) Option {
	return func(d *Dir) { d.warn = warn }
}

// Open makes the state dir at path (and its parts) if missing and holds a
// shared flock on it until Close, waiting up to flock.Wait while gc holds
// it exclusive. Builds share it with each other; GC refuses while any
// holds it.
//
// In a user namespace (rootless, internal/userns) the overlay-form dirs
// are those of a userxattr overlay (user.overlay.opaque), device nodes
// of base layers are skipped with a warning, and WriteLayer reads upper
// dirs WithUserXattr: the choice follows the namespace the process runs
// in, as internal/overlay's mounts do.
func Open(path string, opts ...Option) (*Dir, error) {
	if path == "" {
		return nil, errors.New("no state dir: give --state-dir DIR, or set HOME or XDG_DATA_HOME")
	}
	l := layout(path)
	for _, d := range l.dirs() {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("making state dir: %w", err)
		}
	}
	lk, err := flock.Acquire(path, flock.Shared, flock.Wait, "state dir "+path)
	if err != nil {
		return nil, err
	}
	d := &Dir{layout: l, lock: lk, boot: bootID(), warn: func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "layercommit: warning: "+format+"\n", args...)
	}}
	for _, o := range opts {
		o(d)
	}
	return d, nil
}

// Close releases the state dir's lock. It is safe on nil and more than
// once.
func (d *Dir) Close() {
	if d != nil {
		d.lock.Unlock()
	}
}

// Path is the state dir.
func (d *Dir) Path() string { return d.path() }

// BlobDir is where new layer blobs go (blobs/sha256), named by digest;
// a blob there is named by the cache entry that Store records.
func (d *Dir) BlobDir() string { return d.blobDir() }

// LayerDir is where the layer of diffID is kept in overlay form once
// unpacked or adopted; it may not exist, and is only to be used after
// HasLayer (or UnpackLayer) says so.
func (d *Dir) LayerDir(diffID v1.Hash) string { return d.layerDir(diffID) }

// HasLayer says whether LayerDir(diffID) holds the layer. Layer dirs are
// published without syncing them (unpacks, and step upper dirs that
// volatile overlays wrote: syncing them is most of a large COPY's time),
// so each is marked with the boot that published it (layerMark, itself
// not synced) and is trusted in that boot only: after a crash, or any
// reboot, a dir whose data may never have reached the disk is removed
// here and unpacked again from its blob (which is synced). A dir whose
// mark is missing, unreadable or short (a crash, or an earlier version of
// layercommit) is not trusted either; one marked markSynced was synced
// before it was published (no boot id to mark it with).
func (d *Dir) HasLayer(diffID v1.Hash) bool {
	if !dirExists(d.layerDir(diffID)) {
		return false
	}
	if d.markTrusted(diffID) {
		return true
	}
	if d.withLayer(diffID, nil) != nil {
		return false
	}
	return dirExists(d.layerDir(diffID))
}

// markSynced is the mark of a layer dir synced before it was published.
const markSynced = "synced"

// markTrusted says whether diffID's layer mark is this boot's or
// markSynced.
func (d *Dir) markTrusted(diffID v1.Hash) bool {
	b, err := os.ReadFile(d.layerMark(diffID))
	return err == nil && (string(b) == markSynced || d.boot != "" && string(b) == d.boot)
}

// withLayer takes the lock that serialises publishing and discarding
// layer dirs (between goroutines and processes), discards diffID's dir
// if it is there untrusted, calls fn (if not nil) and lets go; the
// discarded dir is removed after, outside the lock.
func (d *Dir) withLayer(diffID v1.Hash, fn func() error) error {
	lk, err := flock.Acquire(d.layersDir(), flock.Exclusive, flock.Wait, "unpacked layers of state dir "+d.path())
	if err != nil {
		return err
	}
	gone := ""
	if dirExists(d.layerDir(diffID)) && !d.markTrusted(diffID) {
		gone = d.discard(diffID)
	}
	if fn != nil {
		err = fn()
	}
	lk.Unlock()
	if gone != "" {
		os.RemoveAll(gone)
	}
	return err
}

// discard moves diffID's layer dir into tmp/ and removes its mark (under
// withLayer's lock), returning the moved dir for the caller to remove
// outside the lock, or "".
func (d *Dir) discard(diffID v1.Hash) string {
	tmp, err := d.TempDir("stale-")
	if err != nil {
		return ""
	}
	gone := filepath.Join(tmp, "layer")
	if err := os.Rename(d.layerDir(diffID), gone); err != nil {
		os.RemoveAll(tmp)
		return ""
	}
	os.Remove(d.layerMark(diffID))
	return tmp
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// TempDir makes a scratch dir under tmp/ whose name starts with prefix.
// The caller removes it; GC removes what a killed build left there
// (unmounting anything mounted below it first).
func (d *Dir) TempDir(prefix string) (string, error) {
	return os.MkdirTemp(d.tmpDir(), prefix)
}

// InitDir returns the init layer's dir, made once by calling build on a
// fresh scratch dir that is then renamed into place. When another build
// made it first, the scratch dir is dropped and theirs is used.
func (d *Dir) InitDir(build func(dir string) error) (string, error) {
	dst := d.initDir()
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	tmp, err := d.TempDir("init-")
	if err != nil {
		return "", err
	}
	if err := build(tmp); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.RemoveAll(tmp)
		if _, serr := os.Stat(dst); serr != nil {
			return "", err
		}
	}
	return dst, nil
}

// WriteLayer diffs the overlay upper dir upper into a layer blob in
// BlobDir (layer.Write with opts).
func (d *Dir) WriteLayer(ctx context.Context, upper string, opts ...layer.Option) (*layer.Layer, error) {
	var dopts []diff.OverlayOption
	if userns.RunningInUserNS() {
		dopts = append(dopts, diff.WithUserXattr())
	}
	return layer.Write(ctx, d.blobDir(), diff.Overlay(upper, dopts...), opts...)
}

// WriteLayerFrom writes the change set src as a layer blob in BlobDir
// (layer.Write with opts): a step's changes found otherwise than in a
// kernel overlay's upper dir (fuse-overlayfs's, a naive diff).
func (d *Dir) WriteLayerFrom(ctx context.Context, src diff.Source, opts ...layer.Option) (*layer.Layer, error) {
	return layer.Write(ctx, d.blobDir(), src, opts...)
}

// BlobLayer reopens a layer blob of BlobDir from its record; false when
// the blob is gone or is not of the recorded size. Reads of the layer are
// digest-checked.
func (d *Dir) BlobLayer(desc layer.Descriptor) (*layer.Layer, bool) {
	l, err := layer.FromFile(d.blobPath(desc.Digest), desc)
	return l, err == nil
}

// overlayDirLayer is the optional ability of a layer that already exists
// as an overlay-form directory (a Docker data root's overlay2/<id>/diff):
// it is used as a lower as is, without unpacking.
type overlayDirLayer interface {
	OverlayDir() (string, error)
}

// UnpackLayer returns the overlay-form dir of l: its own, if l has one
// (an OverlayDir method), else LayerDir of its diffID, unpacked there
// once. The stream is checked against the diffID to its end before the
// dir is published.
func (d *Dir) UnpackLayer(ctx context.Context, l v1.Layer) (string, error) {
	if od, ok := l.(overlayDirLayer); ok {
		if dir, err := od.OverlayDir(); err == nil {
			return dir, nil
		}
	}
	diffID, err := l.DiffID()
	if err != nil {
		return "", err
	}
	dst := d.layerDir(diffID)
	if d.HasLayer(diffID) {
		return dst, nil
	}
	tmp, err := d.TempDir("unpack-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	rc, err := l.Uncompressed()
	if err != nil {
		return "", fmt.Errorf("reading layer %s: %w", diffID, err)
	}
	v := verify.Reader(rc, diffID, verify.UnknownSize)
	defer v.Close()
	tree := filepath.Join(tmp, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		return "", err
	}
	uopts := []unpack.Option{unpack.WithOverlayForm()}
	if userns.RunningInUserNS() {
		uopts = append(uopts, unpack.WithUserXattr(), unpack.WithDeviceSkip(func(name string, err error) {
			d.warn("layer %s: skipped device %s: a user namespace cannot create device nodes (%v)", diffID, name, err)
		}))
	}
	if userns.Inside() == userns.ModeSingle {
		uopts = append(uopts, unpack.WithUnmappedOwners())
	}
	if _, err := unpack.Apply(ctx, tree, v, uopts...); err != nil {
		return "", fmt.Errorf("unpacking layer %s: %w", diffID, err)
	}
	// Read to the end so that the diffID covers the whole stream.
	if _, err := io.Copy(io.Discard, v); err != nil {
		return "", fmt.Errorf("unpacking layer %s: %w", diffID, err)
	}
	return dst, d.Adopt(tree, diffID)
}

// Adopt moves the overlay-form dir dir (on the state dir's file system,
// e.g. a step's upper dir) to LayerDir(diffID), marked as this boot's
// (HasLayer); if one is already there, dir is removed instead. Without a
// boot id to mark it with, the file system is synced first (markSynced).
func (d *Dir) Adopt(dir string, diffID v1.Hash) error {
	err := d.withLayer(diffID, func() error { return d.publish(dir, diffID) })
	if errors.Is(err, os.ErrExist) {
		return os.RemoveAll(dir)
	}
	if err != nil {
		return fmt.Errorf("storing unpacked layer %s: %w", diffID, err)
	}
	return nil
}

// publish renames dir to diffID's layer dir (under withLayer's lock),
// after writing its mark; os.ErrExist when one is there.
func (d *Dir) publish(dir string, diffID v1.Hash) error {
	dst := d.layerDir(diffID)
	if dirExists(dst) {
		return os.ErrExist
	}
	mark := d.boot
	if mark == "" {
		if err := syncFS(dir); err != nil {
			return err
		}
		mark = markSynced
	}
	// Not synced: a mark lost in a crash only costs an unpack.
	if err := os.WriteFile(d.layerMark(diffID), []byte(mark), 0o600); err != nil {
		return err
	}
	return os.Rename(dir, dst)
}

// syncFS syncs the file system holding dir.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// CacheEntry is one build step's result, stored as cache/<key>.json: the
// step's image config and, for a step that made a layer, the record of
// its blob in BlobDir.
type CacheEntry struct {
	Config json.RawMessage   `json:"config"`
	Layer  *layer.Descriptor `json:"layer,omitempty"`
}

// readEntry reads the cache entry at p.
func readEntry(p string) (*CacheEntry, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var e CacheEntry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	return &e, nil
}

// Lookup returns the entry stored under key, if it and its blob exist;
// an unreadable entry is a miss.
func (d *Dir) Lookup(key string) (*CacheEntry, bool) {
	e, err := readEntry(d.cachePath(key))
	if err != nil || len(e.Config) == 0 {
		return nil, false
	}
	if e.Layer != nil {
		if _, ok := d.BlobLayer(*e.Layer); !ok {
			return nil, false
		}
	}
	return e, true
}

// Store records e under key (temp file, fsync, rename).
func (d *Dir) Store(key string, e *CacheEntry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(d.cachePath(key), b, 0o600)
}
