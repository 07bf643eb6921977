package containersstorage

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// LibpodContainer is what libpod's database (libpod/bolt_state.db under
// the store's root) records of a container and podman commit reads:
// its config as podman run made it.
type LibpodContainer struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Entrypoint []string          `json:"entrypoint"`
	Command    []string          `json:"command"`
	User       string            `json:"user"`
	Labels     map[string]string `json:"labels"`
	// ImageName is the name the container's image was given by
	// (rootfsImageName): podman commit's history comment is "FROM " it.
	ImageName string `json:"rootfsImageName"`
	ImageID   string `json:"rootfsImageID"`
	Spec      struct {
		Process *struct {
			Env []string `json:"env"`
			Cwd string   `json:"cwd"`
		} `json:"process"`
	} `json:"spec"`
	PortMappings []struct {
		ContainerPort uint16 `json:"container_port"`
		Protocol      string `json:"protocol"`
	} `json:"newPortMappings"`
	ExposedPorts map[uint16][]string `json:"exposedPorts"`
	UserVolumes  []string            `json:"userVolumes"`
	NamedVolumes []struct {
		Name string `json:"volumeName"`
		Dest string `json:"dest"`
	} `json:"namedVolumes"`
	// AnonVolumes are the destinations of NamedVolumes whose volume is
	// anonymous (libpod's volume config isAnon); filled in by Libpod.
	AnonVolumes map[string]bool `json:"-"`
	// State is libpod's state of the container (3: running, 4: paused
	// is not numbered so; see Running) and Pid its init process.
	State struct {
		State int `json:"state"`
		Pid   int `json:"pid"`
	} `json:"-"`
}

// Libpod states (libpod/define ContainerStatus).
const (
	libpodRunning = 3
	libpodPaused  = 5
)

// Running reports whether libpod records the container as running (and
// not paused).
func (c *LibpodContainer) Running() bool { return c.State.State == libpodRunning }

// Paused reports whether libpod records the container as paused.
func (c *LibpodContainer) Paused() bool { return c.State.State == libpodPaused }

// Libpod reads container id's record from the store's libpod database,
// read-only: bolt's shared lock on the file, waited for up to the store's
// lock timeout (a podman command holds the database exclusively while it
// runs), then refused with ErrLocked. A store with no libpod database
// (a buildah-only store) is ErrNotFound.
func (s *Store) Libpod(id string) (*LibpodContainer, error) {
	path := filepath.Join(s.Root, "libpod", "bolt_state.db")
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%w: %s has no libpod database: %v", ErrNotFound, s.Root, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: s.timeout()})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s held by another process for %s", ErrLocked, path, s.timeout())
		}
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	defer db.Close()
	c := &LibpodContainer{AnonVolumes: map[string]bool{}}
	err = db.View(func(tx *bolt.Tx) error {
		ctrs := tx.Bucket([]byte("ctr"))
		if ctrs == nil {
			return fmt.Errorf("%w: %s has no ctr bucket", ErrLayout, path)
		}
		b := ctrs.Bucket([]byte(id))
		if b == nil {
			return fmt.Errorf("%w: container %s is not in %s (not a podman container?)", ErrNotFound, id, path)
		}
		if err := json.Unmarshal(b.Get([]byte("config")), c); err != nil {
			return fmt.Errorf("%w: config of container %s in %s: %v", ErrCorrupt, id, path, err)
		}
		if st := b.Get([]byte("state")); st != nil {
			if err := json.Unmarshal(st, &c.State); err != nil {
				return fmt.Errorf("%w: state of container %s in %s: %v", ErrCorrupt, id, path, err)
			}
		}
		vols := tx.Bucket([]byte("vol"))
		for _, v := range c.NamedVolumes {
			if vols == nil || vols.Bucket([]byte(v.Name)) == nil {
				continue
			}
			var vc struct {
				IsAnon bool `json:"isAnon"`
			}
			if raw := vols.Bucket([]byte(v.Name)).Get([]byte("config")); raw != nil {
				if err := json.Unmarshal(raw, &vc); err != nil {
					return fmt.Errorf("%w: config of volume %s in %s: %v", ErrCorrupt, v.Name, path, err)
				}
			}
			c.AnonVolumes[v.Dest] = vc.IsAnon
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if c.ID != id {
		return nil, fmt.Errorf("%w: container record %s in %s names %q", ErrCorrupt, id, path, c.ID)
	}
	return c, nil
}
