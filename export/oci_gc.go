package export

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/internal/atomicfile"
	"github.com/layercommit/layercommit/internal/cleanup"
	"github.com/layercommit/layercommit/internal/flock"
	"github.com/layercommit/layercommit/internal/verify"
)

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// GCLayout cleans the OCI image layout dir: our temp files (at the top and
// in each blobs/<alg>/) and the blobs in blobs/sha256 that nothing
// reachable from index.json names. It takes the layout's exclusive use
// lock, waiting up to flock.Wait for writers to finish (see lock.go), and
// then its index lock. It never removes a blob that a manifest reachable
// from index.json names, and refuses to remove any blob when a reachable
// manifest or index is missing, does not verify or does not parse. Files
// not named like a sha256 digest are not ours to judge and stay.
func GCLayout(dir string, r cleanup.Report) error { return gcLayout(dir, r, flock.Wait) }

// gcLayout is GCLayout waiting up to wait for the use lock (0: fail with
// flock.ErrLocked at once while a writer holds it).
func gcLayout(dir string, r cleanup.Report, wait time.Duration) error {
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
		return fmt.Errorf("gc oci:%s: not an OCI layout: %w", dir, err)
	}
	use, err := flock.Acquire(filepath.Join(dir, "blobs"), flock.Exclusive, wait, "OCI layout "+dir)
	if err != nil {
		return fmt.Errorf("gc oci:%s: %w", dir, err)
	}
	defer use.Unlock()
	idx, err := lockDir(dir, flock.Exclusive, "OCI layout "+dir)
	if err != nil {
		return fmt.Errorf("gc oci:%s: %w", dir, err)
	}
	defer idx.Unlock()

	if err := r.RemoveTemps(dir, atomicfile.TempPrefix); err != nil {
		return err
	}
	algs, err := os.ReadDir(filepath.Join(dir, "blobs"))
	if err != nil {
		return fmt.Errorf("gc oci:%s: %w", dir, err)
	}
	for _, a := range algs {
		if a.IsDir() {
			if err := r.RemoveTemps(filepath.Join(dir, "blobs", a.Name()), atomicfile.TempPrefix); err != nil {
				return err
			}
		}
	}
	live, err := reachable(dir)
	if err != nil {
		return fmt.Errorf("gc oci:%s: not removing any blob: %w", dir, err)
	}
	blobs := filepath.Join(dir, "blobs", "sha256")
	ents, err := os.ReadDir(blobs)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("gc oci:%s: %w", dir, err)
	}
	for _, e := range ents {
		// Only regular files named like a digest are blobs we may drop;
		// anything else is not ours to judge.
		if !e.Type().IsRegular() || !hex64.MatchString(e.Name()) || live["sha256:"+e.Name()] {
			continue
		}
		if err := r.Remove(filepath.Join(blobs, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// reachable returns every digest named by index.json and, recursively, by
// the manifests and indexes it names (config, layers, manifests, blobs,
// subject). A named manifest or index that is missing, does not verify or
// does not parse is an error: then what is referenced is unknown.
func reachable(dir string) (map[string]bool, error) {
	live := map[string]bool{}
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if errors.Is(err, os.ErrNotExist) {
		return live, nil
	}
	if err != nil {
		return nil, err
	}
	var walk func(b []byte, what string) error
	walk = func(b []byte, what string) error {
		var m struct {
			Config    *v1.Descriptor  `json:"config"`
			Subject   *v1.Descriptor  `json:"subject"`
			Layers    []v1.Descriptor `json:"layers"`
			Manifests []v1.Descriptor `json:"manifests"`
			Blobs     []v1.Descriptor `json:"blobs"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("reading %s: %w", what, err)
		}
		var leaves []v1.Descriptor
		leaves = append(leaves, m.Layers...)
		leaves = append(leaves, m.Blobs...)
		for _, d := range []*v1.Descriptor{m.Config, m.Subject} {
			if d != nil {
				leaves = append(leaves, *d)
			}
		}
		for _, d := range leaves {
			live[d.Digest.String()] = true
		}
		for _, d := range m.Manifests {
			if live[d.Digest.String()] {
				continue
			}
			live[d.Digest.String()] = true
			if d.Digest.Algorithm != "sha256" || !hex64.MatchString(d.Digest.Hex) || d.Size < 0 {
				return fmt.Errorf("%s names a bad descriptor %q", what, d.Digest)
			}
			f, err := os.Open(filepath.Join(dir, "blobs", "sha256", d.Digest.Hex))
			if err != nil {
				return fmt.Errorf("%s names %s: %w", what, d.Digest, err)
			}
			child, err := readAllVerified(f, d.Digest, d.Size)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s names %s: %w", what, d.Digest, err)
			}
			if err := walk(child, d.Digest.String()); err != nil {
				return err
			}
		}
		return nil
	}
	return live, walk(b, "index.json")
}

// manifestLimit caps a manifest read (ggcr's limit).
const manifestLimit = 100 << 20

func readAllVerified(f *os.File, dg v1.Hash, size int64) ([]byte, error) {
	if size > manifestLimit {
		return nil, fmt.Errorf("manifest of %d bytes is over the limit", size)
	}
	return verify.ReadAll(f, dg, size)
}
