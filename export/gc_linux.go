package export

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/dockerroot"
	"github.com/layercommit/layercommit/internal/atomicfile"
	"github.com/layercommit/layercommit/internal/flock"
)

// dockerRoot cleans a Docker data root under its write lock: temp dirs of
// our writers in tmp/ (each kept while its writer holds it), our temp
// dirs in overlay2/, overlay2 dirs still marked pending that no layerdb
// entry names (with their l/ link), our temp files in the image store,
// and, when no dockerd runs on the root, dockerd's own abandoned write
// sets in layerdb/tmp. It never descends into a layer's diff/.
func (g *gc) dockerRoot(dir string) error {
	root, err := dockerroot.Open(dir)
	if err != nil {
		return fmt.Errorf("gc docker-root %s: %w", dir, err)
	}
	pid, live := dockerroot.DaemonUsing(root.Dir)
	if live && !g.r.Force {
		return fmt.Errorf("gc docker-root: dockerd (pid %d) is running on %s: stop it first, or pass --force", pid, root.Dir)
	}
	unlock, err := root.Lock()
	if err != nil {
		return fmt.Errorf("gc docker-root: %w", err)
	}
	defer unlock()

	if err := g.removeTemps(filepath.Join(root.Dir, "tmp"), dockerroot.TempPrefix, true); err != nil {
		return err
	}
	ov := filepath.Join(root.Dir, "overlay2")
	if err := g.removeTemps(ov, dockerroot.TempPrefix, false); err != nil {
		return err
	}
	img := filepath.Join(root.Dir, "image", "overlay2")
	used, err := cacheIDs(img)
	if err != nil {
		return fmt.Errorf("gc docker-root %s: not removing layer dirs: %w", dir, err)
	}
	ents, err := os.ReadDir(ov)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range ents {
		if !e.IsDir() || e.Name() == "l" || strings.HasPrefix(e.Name(), dockerroot.TempPrefix) {
			continue
		}
		layerDir := filepath.Join(ov, e.Name())
		// Our temp files beside diff/ (link, lower, committed).
		if err := g.removeTemps(layerDir, atomicfile.TempPrefix, false); err != nil {
			return err
		}
		marker := filepath.Join(layerDir, dockerroot.PendingMarker)
		if _, err := os.Lstat(marker); err != nil {
			continue // not ours, or complete
		}
		if used[e.Name()] {
			// The layerdb entry was made; only the marker's removal was
			// cut off.
			if err := g.remove(marker); err != nil {
				return err
			}
			continue
		}
		if link, err := os.ReadFile(filepath.Join(layerDir, "link")); err == nil {
			lp := filepath.Join(ov, "l", strings.TrimSpace(string(link)))
			if t, err := os.Readlink(lp); err == nil && t == filepath.Join("..", e.Name(), "diff") {
				if err := g.remove(lp); err != nil {
					return err
				}
			}
		}
		if err := g.remove(layerDir); err != nil {
			return err
		}
	}
	// Our temp files anywhere in the image store (config, metadata,
	// repositories.json, write-set files).
	var temps []string
	werr := filepath.WalkDir(img, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if p != img && strings.HasPrefix(d.Name(), atomicfile.TempPrefix) {
			temps = append(temps, p)
			if d.IsDir() {
				return fs.SkipDir
			}
		}
		return nil
	})
	if werr != nil {
		return fmt.Errorf("gc docker-root %s: %w", dir, werr)
	}
	for _, p := range temps {
		if err := g.remove(p); err != nil {
			return err
		}
	}
	// Write sets are scratch space of one registration, ours or
	// dockerd's; with no daemon and our lock held none is in use.
	if live {
		return nil
	}
	sets, err := filepath.Glob(filepath.Join(img, "layerdb", "tmp", "write-set-*"))
	if err != nil {
		return err
	}
	for _, p := range sets {
		if err := g.remove(p); err != nil {
			return err
		}
	}
	return nil
}

// cacheIDs lists the overlay2 dirs the image store names: the cache-id of
// every layer and the mount-id and init-id of every container layer.
func cacheIDs(img string) (map[string]bool, error) {
	used := map[string]bool{}
	for _, pat := range []string{"layerdb/*/*/cache-id", "layerdb/mounts/*/mount-id", "layerdb/mounts/*/init-id"} {
		files, err := filepath.Glob(filepath.Join(img, pat))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			used[strings.TrimSpace(string(b))] = true
		}
	}
	return used, nil
}

// stateDir cleans a layercommit state dir (builder/state_linux.go):
// everything under tmp/, temp files, blobs in blobs/sha256 that no cache
// entry names, and cache entries whose blob is gone. Unpacked layers in
// layers/ are a cache, not leftovers, and are kept. Builds hold a shared
// flock on the state dir; GC takes it exclusive and refuses while a build
// holds it (unless --force).
func (g *gc) stateDir(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256")); err != nil {
		return fmt.Errorf("gc state dir %s: not a layercommit state dir: %w", dir, err)
	}
	lock, err := flock.Acquire(dir, flock.Exclusive, 0, "state dir "+dir)
	if errors.Is(err, flock.ErrLocked) && !g.r.Force {
		return fmt.Errorf("gc state dir: a layercommit build is using %s: let it finish, or pass --force", dir)
	} else if err != nil && !errors.Is(err, flock.ErrLocked) {
		return fmt.Errorf("gc state dir: %w", err)
	}
	defer lock.Unlock()
	ents, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range ents {
		// A killed step can leave its overlay (and binds) mounted here:
		// unmount first, never delete through a mount.
		p := filepath.Join(dir, "tmp", e.Name())
		if err := unmountUnder(p); err != nil {
			g.kept(p, err.Error())
			continue
		}
		if err := g.remove(p); err != nil {
			return err
		}
	}
	for _, sub := range []string{".", "blobs/sha256", "cache", "layers"} {
		if err := g.removeTemps(filepath.Join(dir, sub), atomicfile.TempPrefix, false); err != nil {
			return err
		}
	}
	// Cache entries name the blobs that builds made.
	entries, err := filepath.Glob(filepath.Join(dir, "cache", "*.json"))
	if err != nil {
		return err
	}
	named := map[string]bool{}
	var stale []string
	for _, p := range entries {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var e struct {
			Layer *struct {
				Digest string `json:"digest"`
			} `json:"layer"`
		}
		if err := json.Unmarshal(b, &e); err != nil {
			return fmt.Errorf("gc state dir %s: not removing blobs: reading %s: %w", dir, p, err)
		}
		if e.Layer == nil {
			continue
		}
		hex := strings.TrimPrefix(e.Layer.Digest, "sha256:")
		named[hex] = true
		if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256", hex)); errors.Is(err, os.ErrNotExist) {
			stale = append(stale, p)
		}
	}
	blobs, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		return err
	}
	for _, b := range blobs {
		if b.Type().IsRegular() && hex64.MatchString(b.Name()) && !named[b.Name()] {
			if err := g.remove(filepath.Join(dir, "blobs", "sha256", b.Name())); err != nil {
				return err
			}
		}
	}
	for _, p := range stale {
		if err := g.remove(p); err != nil {
			return err
		}
	}
	return nil
}

// unmountUnder detaches every mount at or below p, deepest first, so that
// removing p cannot reach into another file system (a build step's
// overlay, or a bind of a host directory).
func unmountUnder(p string) error {
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(filepath.Clean(p)))
	if err != nil {
		return fmt.Errorf("listing mounts: %w", err)
	}
	points := make([]string, len(ms))
	for i, m := range ms {
		points[i] = m.Mountpoint
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, mp := range points {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmounting %s: %w", mp, err)
		}
	}
	return nil
}
