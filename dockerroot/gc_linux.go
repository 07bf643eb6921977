package dockerroot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/layercommit/layercommit/internal/atomicfile"
	"github.com/layercommit/layercommit/internal/cleanup"
)

// GC cleans the Docker data root dir of what interrupted writes left,
// under the lock Write holds (Lock): temp dirs in TmpDir that no live
// writer holds (those are reported as kept), our temp dirs in overlay2/,
// overlay2 dirs still marked pending (PendingMarker) that no layerdb entry
// names, with their l/ link, the marker alone of a pending dir that
// layerdb does name, our temp files in the image store, and, when no
// dockerd runs on the root, dockerd's own abandoned write sets in
// layerdb/tmp. It never descends into a layer's diff/.
//
// It refuses a root a running dockerd uses unless force; with force it
// removes only what layercommit made there (never the write sets).
func GC(dir string, force bool, rep cleanup.Report) error {
	root, err := Open(dir)
	if err != nil {
		return fmt.Errorf("gc docker-root %s: %w", dir, err)
	}
	pid, live := DaemonUsing(root.Dir)
	if live && !force {
		return fmt.Errorf("gc docker-root: dockerd (pid %d) is running on %s: stop it first, or pass --force", pid, root.Dir)
	}
	unlock, err := root.Lock()
	if err != nil {
		return fmt.Errorf("gc docker-root: %w", err)
	}
	defer unlock()

	if err := rep.RemoveUnheldTemps(root.TmpDir(), TempPrefix); err != nil {
		return err
	}
	if err := root.gcLayerDirs(rep); err != nil {
		return err
	}
	if err := root.gcImageStoreTemps(rep); err != nil {
		return err
	}
	// Write sets are scratch space of one registration, ours or
	// dockerd's; with no daemon and our lock held none is in use.
	if live {
		return nil
	}
	sets, err := filepath.Glob(filepath.Join(root.imageDir(), "layerdb", "tmp", "write-set-*"))
	if err != nil {
		return err
	}
	for _, p := range sets {
		if err := rep.Remove(p); err != nil {
			return err
		}
	}
	return nil
}

// gcLayerDirs removes our temp dirs in overlay2/, our temp files beside
// each layer's diff/, and the overlay2 dirs Write left pending.
func (r *Root) gcLayerDirs(rep cleanup.Report) error {
	ov := r.path("overlay2")
	if err := rep.RemoveTemps(ov, TempPrefix); err != nil {
		return err
	}
	used, err := r.cacheIDs()
	if err != nil {
		return fmt.Errorf("gc docker-root %s: not removing layer dirs: %w", r.Dir, err)
	}
	ents, err := os.ReadDir(ov)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range ents {
		if !e.IsDir() || e.Name() == "l" || strings.HasPrefix(e.Name(), TempPrefix) {
			continue
		}
		layerDir := filepath.Join(ov, e.Name())
		// Our temp files beside diff/ (link, lower, committed).
		if err := rep.RemoveTemps(layerDir, atomicfile.TempPrefix); err != nil {
			return err
		}
		marker := filepath.Join(layerDir, PendingMarker)
		if _, err := os.Lstat(marker); err != nil {
			continue // not ours, or complete
		}
		if used[e.Name()] {
			// The layerdb entry was made; only the marker's removal was
			// cut off.
			if err := rep.Remove(marker); err != nil {
				return err
			}
			continue
		}
		if link, err := os.ReadFile(filepath.Join(layerDir, "link")); err == nil {
			lp := filepath.Join(ov, "l", strings.TrimSpace(string(link)))
			if t, err := os.Readlink(lp); err == nil && t == filepath.Join("..", e.Name(), "diff") {
				if err := rep.Remove(lp); err != nil {
					return err
				}
			}
		}
		if err := rep.Remove(layerDir); err != nil {
			return err
		}
	}
	return nil
}

// gcImageStoreTemps removes our temp files anywhere in the image store
// (config, metadata, repositories.json, write-set files).
func (r *Root) gcImageStoreTemps(rep cleanup.Report) error {
	img := r.imageDir()
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
		return fmt.Errorf("gc docker-root %s: %w", r.Dir, werr)
	}
	for _, p := range temps {
		if err := rep.Remove(p); err != nil {
			return err
		}
	}
	return nil
}

// cacheIDs lists the overlay2 dirs the image store names: the cache-id of
// every layer and the mount-id and init-id of every container layer.
func (r *Root) cacheIDs() (map[string]bool, error) {
	used := map[string]bool{}
	for _, pat := range []string{"layerdb/*/*/cache-id", "layerdb/mounts/*/mount-id", "layerdb/mounts/*/init-id"} {
		files, err := filepath.Glob(filepath.Join(r.imageDir(), pat))
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
