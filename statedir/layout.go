package statedir

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/internal/userns"
)

// RootDefault is root's state dir when none is named (--state-dir).
const RootDefault = "/var/lib/layercommit"

// Default is DefaultPath as the process started: the state dir when none
// is named (--state-dir).
var Default = DefaultPath()

// DefaultPath is the state dir when none is named: RootDefault for root,
// and for an ordinary user (also inside the user namespace its run
// re-executes in, where it is uid 0) $XDG_DATA_HOME/layercommit when
// XDG_DATA_HOME is an absolute path (the XDG spec ignores others), else
// ~/.local/share/layercommit, with ~ from $HOME or else the passwd
// entry; with a single-id map (--userns=single) layercommit-single
// there instead, since layers unpacked under one mapping have other
// owners under the other. Nothing under /var/lib is a user's. It is ""
// when the user has no home at all (Open then refuses).
func DefaultPath() string {
	if os.Geteuid() == 0 && userns.Inside() == "" {
		return RootDefault
	}
	uid := os.Getuid()
	if caller, ok := userns.Caller(); ok {
		uid = caller
	}
	name := "layercommit"
	if userns.Inside() == userns.ModeSingle {
		// Layers unpacked under one mapping read as other owners under
		// the other: each has its own state dir.
		name = "layercommit-single"
	}
	return userDefault(os.Getenv("XDG_DATA_HOME"), os.Getenv("HOME"), uid, name)
}

func userDefault(xdg, home string, uid int, name string) string {
	if filepath.IsAbs(xdg) {
		return filepath.Join(xdg, name)
	}
	if !filepath.IsAbs(home) {
		u, err := user.LookupId(strconv.Itoa(uid))
		if err != nil || !filepath.IsAbs(u.HomeDir) {
			return ""
		}
		home = u.HomeDir
	}
	return filepath.Join(home, ".local", "share", name)
}

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

// layerMark is the file beside a layer dir that names the boot that
// published it (Dir.HasLayer).
func (l layout) layerMark(diffID v1.Hash) string {
	return filepath.Join(l.layersDir(), diffID.Hex+".boot")
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
