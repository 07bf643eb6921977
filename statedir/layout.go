package statedir

import (
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Default is the state dir when none is named (--state-dir).
const Default = "/var/lib/layercommit"

// layout names the parts of the state dir at path (see the package doc).
// Only this file names the parts of a state dir.
type layout string

func (l layout) path() string    { return string(l) }
func (l layout) blobDir() string { return filepath.Join(string(l), "blobs", "sha256") }
func (l layout) blobPath(d v1.Hash) string {
	return filepath.Join(l.blobDir(), d.Hex)
}
func (l layout) layersDir() string { return filepath.Join(string(l), "layers") }
func (l layout) layerDir(diffID v1.Hash) string {
	return filepath.Join(l.layersDir(), diffID.Hex)
}
func (l layout) cacheDir() string            { return filepath.Join(string(l), "cache") }
func (l layout) cachePath(key string) string { return filepath.Join(l.cacheDir(), key+".json") }
func (l layout) tmpDir() string              { return filepath.Join(string(l), "tmp") }
func (l layout) initDir() string             { return filepath.Join(string(l), "init") }
func (l layout) imagesDir() string           { return filepath.Join(string(l), "images") }

// ImagesDir is the embedded image store of the state dir at path: an OCI
// image layout that package export's local: transport owns (its writer,
// locks and gc live there); this package only names it and never writes
// inside it.
func ImagesDir(path string) string { return layout(path).imagesDir() }

// cacheMountDir holds RUN --mount=type=cache's caches: one dir per key
// (hex of its sha256), with one instance dir per concurrent private user
// ("0", "1", ...).
func (l layout) cacheMountDir(key string) string {
	return filepath.Join(string(l), "cache-mounts", key)
}

// dirs are the dirs Open makes.
func (l layout) dirs() []string {
	return []string{l.blobDir(), l.layersDir(), l.cacheDir(), l.tmpDir()}
}
