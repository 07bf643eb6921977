package dockerroot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Container is a container of the data root, as config.v2.json and
// layerdb/mounts record it.
type Container struct {
	ID    string
	Name  string // without the leading "/"
	Image v1.Hash
	OS    string
	// Config is the container's config exactly as stored (Docker's
	// container.Config).
	Config json.RawMessage
	// Running and Pid come from the stored state.
	Running, Paused bool
	Pid             int
	// MountID names the container's overlay2 directory; UpperDir is its
	// diff dir, the container's changes.
	MountID  string
	UpperDir string
	// Lowers are the lower dirs of the container's mount, top first
	// (its -init layer, then the image's layers).
	Lowers []string
	// On a containerd image store root (Root.Containerd), Snapshotter is
	// the containerd snapshotter holding the container's file system
	// (snapshot key: the container ID, parent <ID>-init) and
	// ImageManifest the descriptor of its image's manifest, whose digest
	// is Image; MountID, UpperDir and Lowers are empty.
	Snapshotter   string
	ImageManifest json.RawMessage
}

type configV2 struct {
	ID     string
	Name   string
	Image  string
	OS     string
	Driver string
	// ImageManifest is set by the containerd image store.
	ImageManifest json.RawMessage
	Config        json.RawMessage
	State         struct {
		Running, Paused bool
		Pid             int
	}
}

// Container finds a container by full ID, unique ID prefix or name.
func (r *Root) Container(ref string) (*Container, error) {
	dir := r.path("containers")
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	name := strings.TrimPrefix(ref, "/")
	var byPrefix []string
	for _, e := range ents {
		id := e.Name()
		if !validHex(id) {
			continue
		}
		if id == ref {
			return r.readContainer(id)
		}
		if strings.HasPrefix(id, ref) {
			byPrefix = append(byPrefix, id)
		}
	}
	// Names are only in config.v2.json: read them.
	for _, e := range ents {
		if !validHex(e.Name()) {
			continue
		}
		c, err := r.readConfigV2(e.Name())
		if err == nil && strings.TrimPrefix(c.Name, "/") == name {
			return r.readContainer(e.Name())
		}
	}
	switch {
	case len(byPrefix) == 1:
		return r.readContainer(byPrefix[0])
	case len(byPrefix) > 1:
		return nil, fmt.Errorf("container ID prefix %s is %w: it matches %d containers", ref, ErrAmbiguous, len(byPrefix))
	}
	return nil, fmt.Errorf("container %s: %w in %s", ref, ErrNotFound, r.Dir)
}

func (r *Root) readConfigV2(id string) (*configV2, error) {
	b, err := readLimited(r.path("containers", id, "config.v2.json"), maxConfigSize)
	if err != nil {
		return nil, err
	}
	var c configV2
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%w: config.v2.json of container %s: %v", ErrCorrupt, id, err)
	}
	return &c, nil
}

func (r *Root) readContainer(id string) (*Container, error) {
	c, err := r.readConfigV2(id)
	if err != nil {
		return nil, fmt.Errorf("reading container %s: %w", id, err)
	}
	if c.ID != id {
		return nil, fmt.Errorf("%w: container dir %s holds config of %s", ErrCorrupt, id, c.ID)
	}
	if r.Containerd {
		if c.Driver != "overlayfs" {
			return nil, fmt.Errorf("container %s uses the containerd snapshotter %q; only overlayfs is supported", id, c.Driver)
		}
	} else if c.Driver != "" && c.Driver != "overlay2" {
		return nil, fmt.Errorf("container %s uses the %s storage driver; only overlay2 is supported", id, c.Driver)
	}
	var img v1.Hash
	if c.Image != "" || !r.Containerd {
		if img, err = v1.NewHash(c.Image); err != nil {
			return nil, fmt.Errorf("%w: image of container %s: %v", ErrCorrupt, id, err)
		}
	}
	out := &Container{ID: id, Name: strings.TrimPrefix(c.Name, "/"), Image: img, OS: c.OS, Config: c.Config,
		Running: c.State.Running, Paused: c.State.Paused, Pid: c.State.Pid}
	if r.Containerd {
		// FROM scratch containers have no manifest.
		out.Snapshotter, out.ImageManifest = c.Driver, c.ImageManifest
		return out, nil
	}
	mount := filepath.Join(r.imageDir(), "layerdb", "mounts", id)
	if out.MountID, err = readSmall(filepath.Join(mount, "mount-id")); err != nil {
		return nil, fmt.Errorf("container %s has no layer (layerdb/mounts/%s/mount-id): %w", id, id, err)
	}
	if !validCacheID(out.MountID) {
		return nil, fmt.Errorf("%w: container %s has mount-id %q", ErrCorrupt, id, out.MountID)
	}
	out.UpperDir = r.path("overlay2", out.MountID, "diff")
	if fi, err := os.Stat(out.UpperDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("container %s: its layer %s is missing", id, out.UpperDir)
	}
	if lower, err := readSmall(r.path("overlay2", out.MountID, "lower")); err == nil && lower != "" {
		for _, l := range strings.Split(lower, ":") {
			target, err := os.Readlink(r.path("overlay2", l))
			if err != nil {
				return nil, fmt.Errorf("container %s: lower %s: %w", id, l, err)
			}
			out.Lowers = append(out.Lowers, filepath.Join(r.path("overlay2", "l"), target))
		}
	}
	return out, nil
}
