package statedir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/internal/atomicfile"
	"github.com/layercommit/layercommit/internal/cleanup"
	"github.com/layercommit/layercommit/internal/flock"
)

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// GC cleans the state dir at path: everything under tmp/ (after
// unmounting what a killed step left mounted there; an entry that cannot
// be unmounted is kept and reported), our temp files, blobs in
// blobs/sha256 that no cache entry names, and cache entries whose blob is
// gone. Unpacked layers and the init layer are a cache, not leftovers,
// and are kept, but for the unpacked layers a build would no longer trust
// (published in an earlier boot, see Dir.HasLayer).
//
// It takes the state dir's flock exclusive without waiting and refuses
// while a build holds it (see Open) unless force. It refuses to remove
// any blob when a cache entry cannot be read, since then what is named is
// unknown.
func GC(path string, force bool, rep cleanup.Report) error {
	l := layout(path)
	if _, err := os.Stat(l.blobDir()); err != nil {
		return fmt.Errorf("gc state dir %s: not a layercommit state dir: %w", path, err)
	}
	lock, err := flock.Acquire(path, flock.Exclusive, 0, "state dir "+path)
	if errors.Is(err, flock.ErrLocked) && !force {
		return fmt.Errorf("gc state dir: a layercommit build is using %s: let it finish, or pass --force", path)
	} else if err != nil && !errors.Is(err, flock.ErrLocked) {
		return fmt.Errorf("gc state dir: %w", err)
	}
	defer lock.Unlock()

	ents, err := os.ReadDir(l.tmpDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range ents {
		// A killed step can leave its overlay (and binds) mounted here:
		// unmount first, never delete through a mount.
		p := filepath.Join(l.tmpDir(), e.Name())
		if err := unmountUnder(p); err != nil {
			rep.Keep(p, err.Error())
			continue
		}
		if err := rep.Remove(p); err != nil {
			return err
		}
	}
	// Unpacked layers a build of this boot would not trust (Dir.HasLayer)
	// would be unpacked again on use: they are leftovers.
	if err := gcStaleLayers(l, rep); err != nil {
		return err
	}
	for _, dir := range []string{l.path(), l.blobDir(), l.cacheDir(), l.layersDir()} {
		if err := rep.RemoveTemps(dir, atomicfile.TempPrefix); err != nil {
			return err
		}
	}
	// Cache entries name the blobs that builds made.
	entries, err := filepath.Glob(l.cachePath("*"))
	if err != nil {
		return err
	}
	named := map[string]bool{}
	var stale []string
	for _, p := range entries {
		e, err := readEntry(p)
		if err != nil {
			return fmt.Errorf("gc state dir %s: not removing blobs: %w", path, err)
		}
		if e.Layer == nil {
			continue
		}
		named[e.Layer.Digest.Hex] = true
		if _, err := os.Stat(l.blobPath(e.Layer.Digest)); errors.Is(err, os.ErrNotExist) {
			stale = append(stale, p)
		}
	}
	blobs, err := os.ReadDir(l.blobDir())
	if err != nil {
		return err
	}
	for _, b := range blobs {
		if b.Type().IsRegular() && hex64.MatchString(b.Name()) && !named[b.Name()] {
			if err := rep.Remove(filepath.Join(l.blobDir(), b.Name())); err != nil {
				return err
			}
		}
	}
	for _, p := range stale {
		if err := rep.Remove(p); err != nil {
			return err
		}
	}
	return nil
}

// gcStaleLayers removes the layer dirs (and marks) of l that this boot
// does not trust.
func gcStaleLayers(l layout, rep cleanup.Report) error {
	ents, err := os.ReadDir(l.layersDir())
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	d := &Dir{layout: l, boot: bootID()}
	for _, e := range ents {
		if !e.IsDir() || !hex64.MatchString(e.Name()) {
			continue
		}
		diffID := v1.Hash{Algorithm: "sha256", Hex: e.Name()}
		if d.markTrusted(diffID) {
			continue
		}
		if err := rep.Remove(d.layerDir(diffID)); err != nil {
			return err
		}
		if err := os.Remove(d.layerMark(diffID)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
