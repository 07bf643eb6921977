package export

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/internal/atomicfile"
	"github.com/layercommit/layercommit/internal/flock"
	"github.com/layercommit/layercommit/internal/verify"
)

// GCRequest names what GC cleans. Nothing is cleaned that is not named.
type GCRequest struct {
	// Layouts are OCI image layout directories.
	Layouts []string
	// Archives are docker-archive files; temp files beside them are
	// removed.
	Archives []string
	// DockerRoot is a Docker data root ("" for none).
	DockerRoot string
	// StateDir is a layercommit state dir ("" for none).
	StateDir string
	// Force cleans a data root a live dockerd uses (only what layercommit
	// made there) and a state dir a running layercommit uses.
	Force bool
	// Removed is called with each path removed, in order; Kept with each
	// leftover left in place and why. Either may be nil.
	Removed func(path string)
	Kept    func(path, why string)
}

// GC removes what interrupted runs left behind: temp files and dirs
// (atomicfile.TempPrefix and dockerroot.TempPrefix names), blobs that
// nothing reachable from an OCI layout's index.json references,
// overlay2 dirs that a docker-root write made but never entered in
// layerdb, write sets under layerdb/tmp, the state dir's scratch space,
// blobs no cache entry names and cache entries whose blob is gone.
//
// It takes the locks writers take, so it never removes what a running
// writer is making: the exclusive use lock of each layout (waiting for
// writers to finish, up to flock.Wait), the data root's lock, and, per temp
// entry of an archive or a data root's tmp dir, the entry's own flock.
// It refuses a data root a live dockerd uses, and a state dir a running
// layercommit uses, unless Force. It never removes a blob that a
// manifest reachable from index.json names, and refuses to clean a
// layout whose reachable manifests it cannot read. Each target is
// cleaned independently; the first error is returned after all were
// tried.
func GC(ctx context.Context, r GCRequest) error {
	g := &gc{r: r}
	for _, dir := range r.Layouts {
		g.keep(g.layout(dir))
	}
	for _, f := range r.Archives {
		g.keep(g.archive(f))
	}
	if r.DockerRoot != "" {
		g.keep(g.dockerRoot(r.DockerRoot))
	}
	if r.StateDir != "" {
		g.keep(g.stateDir(r.StateDir))
	}
	return g.err
}

type gc struct {
	r   GCRequest
	err error
}

func (g *gc) keep(err error) {
	if err != nil && g.err == nil {
		g.err = err
	}
}

// remove removes p (a file or a whole tree) and reports it.
func (g *gc) remove(p string) error {
	if err := os.RemoveAll(p); err != nil {
		return fmt.Errorf("removing %s: %w", p, err)
	}
	if g.r.Removed != nil {
		g.r.Removed(p)
	}
	return nil
}

func (g *gc) kept(p, why string) {
	if g.r.Kept != nil {
		g.r.Kept(p, why)
	}
}

// removeTemps removes the entries of dir whose names start with prefix.
// With perEntryLock, an entry whose flock a live process holds is kept.
func (g *gc) removeTemps(dir, prefix string, perEntryLock bool) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", dir, err)
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if perEntryLock {
			l, ok := flock.Try(p)
			if !ok {
				g.kept(p, "in use by a running layercommit")
				continue
			}
			err := g.remove(p)
			l.Unlock()
			if err != nil {
				return err
			}
			continue
		}
		if err := g.remove(p); err != nil {
			return err
		}
	}
	return nil
}

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// layout cleans an OCI layout under its exclusive use lock.
func (g *gc) layout(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
		return fmt.Errorf("gc oci:%s: not an OCI layout: %w", dir, err)
	}
	use, err := lockDir(filepath.Join(dir, "blobs"), flock.Exclusive, "OCI layout "+dir)
	if err != nil {
		return fmt.Errorf("gc oci:%s: %w", dir, err)
	}
	defer use.Unlock()
	idx, err := lockDir(dir, flock.Exclusive, "OCI layout "+dir)
	if err != nil {
		return fmt.Errorf("gc oci:%s: %w", dir, err)
	}
	defer idx.Unlock()

	if err := g.removeTemps(dir, atomicfile.TempPrefix, false); err != nil {
		return err
	}
	algs, err := os.ReadDir(filepath.Join(dir, "blobs"))
	if err != nil {
		return fmt.Errorf("gc oci:%s: %w", dir, err)
	}
	for _, a := range algs {
		if a.IsDir() {
			if err := g.removeTemps(filepath.Join(dir, "blobs", a.Name()), atomicfile.TempPrefix, false); err != nil {
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
		if err := g.remove(filepath.Join(blobs, e.Name())); err != nil {
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

// archive removes the temp files and dirs beside a docker-archive file
// that no running writer holds.
func (g *gc) archive(file string) error {
	return g.removeTemps(filepath.Dir(file), atomicfile.TempPrefix+filepath.Base(file)+"-", true)
}
