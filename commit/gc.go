package commit

import (
	"context"
	"os"

	"github.com/layercommit/layercommit/dockerroot"
	"github.com/layercommit/layercommit/export"
	"github.com/layercommit/layercommit/internal/cleanup"
	"github.com/layercommit/layercommit/statedir"
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

// GC removes what interrupted runs left behind in the stores r names,
// each by the gc of the package that writes it, beside its writer and
// its locks: export.GCLayout for each OCI layout, export.GCArchive for
// each docker-archive file, dockerroot.GC for the data root and
// statedir.GC for the state dir and export.GCLayout for its image store (their docs say what each removes, which
// locks it takes and what it refuses). The stores are cleaned in that
// order and independently; the first error is returned after all were
// tried.
func GC(_ context.Context, r GCRequest) error {
	rep := cleanup.Report{Removed: r.Removed, Kept: r.Kept}
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	for _, dir := range r.Layouts {
		keep(export.GCLayout(dir, rep))
	}
	for _, f := range r.Archives {
		keep(export.GCArchive(f, rep))
	}
	if r.DockerRoot != "" {
		keep(dockerroot.GC(r.DockerRoot, r.Force, rep))
	}
	if r.StateDir != "" {
		keep(statedir.GC(r.StateDir, r.Force, rep))
		// The state dir's image store (local:) is an OCI layout.
		if store := export.OpenStore(r.StateDir).Dir(); exists(store) {
			keep(export.GCLayout(store, rep))
		}
	}
	return first
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
