package containersstorage

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Errors callers may test for.
var (
	// ErrNotFound: no container or image of that name in the store.
	ErrNotFound = errors.New("not found")
	// ErrLayout: the directory is not a containers-storage overlay store
	// of the layout this package reads.
	ErrLayout = errors.New("not a containers-storage overlay store")
	// ErrLocked: a lock stayed held by a writer for the whole timeout.
	ErrLocked = errors.New("store locked")
	// ErrCorrupt: a record or file does not say what it must.
	ErrCorrupt = errors.New("corrupt store")
)

// DefaultLockTimeout is how long a read waits for a writer's lock.
const DefaultLockTimeout = 10 * time.Second

// recordLimit bounds the size of every JSON record file read.
const recordLimit = 256 << 20

// Store is a containers-storage store with the overlay driver: Root is
// --root (graphroot), RunRoot --runroot.
type Store struct {
	Root, RunRoot string
	// LockTimeout bounds each wait for a lock (DefaultLockTimeout if 0).
	LockTimeout time.Duration
}

// Open checks that root holds an overlay store of the layout
// containers/storage 1.43 writes and returns it. A store of another
// driver is refused naming the driver.
func Open(root, runRoot string) (*Store, error) {
	for _, f := range []string{"overlay-containers/containers.json", "overlay-layers/layers.json", "overlay-images/images.json"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				// A store of another user's, say.
				return nil, fmt.Errorf("reading the store %s: %w", root, err)
			}
			if m, _ := filepath.Glob(filepath.Join(root, "*-layers")); len(m) > 0 && !strings.HasSuffix(m[0], "/overlay-layers") {
				return nil, fmt.Errorf("%w: %s uses the %s driver, not overlay", ErrLayout, root, strings.TrimSuffix(filepath.Base(m[0]), "-layers"))
			}
			return nil, fmt.Errorf("%w: %s has no %s", ErrLayout, root, f)
		}
	}
	if fi, err := os.Stat(filepath.Join(root, "overlay")); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%w: %s has no overlay directory", ErrLayout, root)
	}
	return &Store{Root: root, RunRoot: runRoot}, nil
}

// Container is a container record with its layer resolved.
type Container struct {
	ID    string
	Names []string
	// Image is the ID of the container's image (its config digest).
	Image string
	// Layer is the container's read-write layer; UpperDir its diff dir
	// and Lowers the diff dirs of its image's layers, top first.
	Layer    string
	UpperDir string
	Lowers   []string
	// Metadata is libpod's JSON ("image-name", "name", ...).
	Metadata string
	// Pid is the container's process (the run root's pidfile), 0 when it
	// is not running.
	Pid int
	// MountProgram says the store's overlay driver mounts through a
	// mount program (fuse-overlayfs, as rootless podman may be set up):
	// overlay/.has-mount-program, which containers/storage writes, says
	// "true".
	MountProgram bool
}

// Layer is a layer record.
type Layer struct {
	ID         string   `json:"id"`
	Names      []string `json:"names,omitempty"`
	Parent     string   `json:"parent,omitempty"`
	DiffDigest v1.Hash  `json:"-"`
	RawDigest  string   `json:"diff-digest,omitempty"`
	DiffSize   *int64   `json:"diff-size,omitempty"`
	// DiffDir is overlay/<id>/diff; TarSplit overlay-layers/<id>.tar-split.gz.
	DiffDir, TarSplit string `json:"-"`
}

type containerRecord struct {
	ID       string   `json:"id"`
	Names    []string `json:"names"`
	Image    string   `json:"image"`
	Layer    string   `json:"layer"`
	Metadata string   `json:"metadata"`
}

type imageRecord struct {
	ID       string   `json:"id"`
	Names    []string `json:"names"`
	Layer    string   `json:"layer"`
	BigNames []string `json:"big-data-names"`
}

var idRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

func (s *Store) timeout() time.Duration {
	if s.LockTimeout > 0 {
		return s.LockTimeout
	}
	return DefaultLockTimeout
}

// readRecords reads the JSON array in file into v under a shared lock
// on lock.
func (s *Store) readRecords(file, lock string, v any) error {
	unlock, err := readLock(lock, s.timeout())
	if err != nil {
		return err
	}
	defer unlock()
	b, err := readLimited(file)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrLayout, file, err)
	}
	return nil
}

func readLimited(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, recordLimit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	if len(b) > recordLimit {
		return nil, fmt.Errorf("%w: %s is over %d bytes", ErrCorrupt, p, recordLimit)
	}
	return b, nil
}

// layers reads every layer record, the volatile ones of the run root too.
func (s *Store) layers() (map[string]*Layer, error) {
	var all []*Layer
	if err := s.readRecords(filepath.Join(s.Root, "overlay-layers/layers.json"), filepath.Join(s.Root, "overlay-layers/layers.lock"), &all); err != nil {
		return nil, fmt.Errorf("reading layers: %w", err)
	}
	if _, err := os.Stat(filepath.Join(s.RunRoot, "overlay-layers/volatile-layers.json")); err == nil {
		// Layers of volatile containers live in the run root, under
		// the same layers.lock.
		var vol []*Layer
		if err := s.readRecords(filepath.Join(s.RunRoot, "overlay-layers/volatile-layers.json"), filepath.Join(s.Root, "overlay-layers/layers.lock"), &vol); err != nil {
			return nil, fmt.Errorf("reading volatile layers: %w", err)
		}
		all = append(all, vol...)
	}
	out := map[string]*Layer{}
	for _, l := range all {
		if !idRE.MatchString(l.ID) {
			return nil, fmt.Errorf("%w: layer id %q", ErrCorrupt, l.ID)
		}
		if l.RawDigest != "" {
			h, err := v1.NewHash(l.RawDigest)
			if err != nil {
				return nil, fmt.Errorf("%w: layer %s diff-digest %q", ErrCorrupt, l.ID, l.RawDigest)
			}
			l.DiffDigest = h
		}
		l.DiffDir = filepath.Join(s.Root, "overlay", l.ID, "diff")
		l.TarSplit = filepath.Join(s.Root, "overlay-layers", l.ID+".tar-split.gz")
		out[l.ID] = l
	}
	return out, nil
}

// chain returns layer id and its parents, top first, each checked to
// have its diff dir.
func chain(layers map[string]*Layer, id string) ([]*Layer, error) {
	var out []*Layer
	for id != "" {
		l, ok := layers[id]
		if !ok {
			return nil, fmt.Errorf("%w: layer %s is not in layers.json", ErrCorrupt, id)
		}
		if fi, err := os.Stat(l.DiffDir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("%w: layer %s has no diff dir %s", ErrCorrupt, id, l.DiffDir)
		}
		out = append(out, l)
		if len(out) > 1000 {
			return nil, fmt.Errorf("%w: layer chain of %s loops", ErrCorrupt, id)
		}
		id = l.Parent
	}
	return out, nil
}

// Container finds the container ref names: a full ID, a unique ID prefix
// or one of its names.
func (s *Store) Container(ref string) (*Container, error) {
	var recs []containerRecord
	if err := s.readRecords(filepath.Join(s.Root, "overlay-containers/containers.json"), filepath.Join(s.Root, "overlay-containers/containers.lock"), &recs); err != nil {
		return nil, fmt.Errorf("reading containers: %w", err)
	}
	var found []containerRecord
	for _, r := range recs {
		match := r.ID == ref || (len(ref) >= 3 && strings.HasPrefix(r.ID, ref))
		for _, n := range r.Names {
			match = match || n == ref
		}
		if match {
			found = append(found, r)
		}
	}
	switch {
	case len(found) == 0:
		return nil, fmt.Errorf("%w: no container %q in %s", ErrNotFound, ref, s.Root)
	case len(found) > 1:
		return nil, fmt.Errorf("container %q is ambiguous in %s (%d match)", ref, s.Root, len(found))
	}
	r := found[0]
	if !idRE.MatchString(r.ID) || !idRE.MatchString(r.Layer) {
		return nil, fmt.Errorf("%w: container record %q", ErrCorrupt, r.ID)
	}
	layers, err := s.layers()
	if err != nil {
		return nil, err
	}
	ls, err := chain(layers, r.Layer)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", r.ID, err)
	}
	c := &Container{ID: r.ID, Names: r.Names, Image: r.Image, Layer: r.Layer, UpperDir: ls[0].DiffDir, Metadata: r.Metadata}
	if c.MountProgram, err = s.mountProgram(); err != nil {
		return nil, err
	}
	for _, l := range ls[1:] {
		c.Lowers = append(c.Lowers, l.DiffDir)
	}
	if b, err := os.ReadFile(filepath.Join(s.RunRoot, "overlay-containers", r.ID, "userdata", "pidfile")); err == nil {
		fmt.Sscan(strings.TrimSpace(string(b)), &c.Pid)
		if c.Pid > 0 {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", c.Pid)); err != nil {
				c.Pid = 0
			}
		}
	}
	return c, nil
}

// mountProgram reads overlay/.has-mount-program: "true" when the driver
// mounts through a mount program; a store without the file mounts
// natively.
func (s *Store) mountProgram() (bool, error) {
	b, err := os.ReadFile(filepath.Join(s.Root, "overlay", ".has-mount-program"))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading the overlay driver's mount program flag: %w", err)
	}
	switch strings.TrimSpace(string(b)) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("%w: %s/overlay/.has-mount-program says %q", ErrCorrupt, s.Root, b)
}

// bigDataPath is where the store keeps image id's big-data item key:
// overlay-images/<id>/KEY when the key is only lower-case letters,
// digits and dots, else "=" and the key in standard base64
// (containers/storage's makeBigDataBaseName).
func (s *Store) bigDataPath(id, key string) string {
	name := key
	for _, c := range key {
		if c != '.' && (c < '0' || c > '9') && (c < 'a' || c > 'z') {
			name = "=" + base64.StdEncoding.EncodeToString([]byte(key))
			break
		}
	}
	return filepath.Join(s.Root, "overlay-images", id, name)
}

// ImageConfig reads image id's config, verifying that its sha256 is id,
// and its layer chain, bottom first, each checked against the diff_ids
// the config lists.
func (s *Store) ImageConfig(id string) ([]byte, []*Layer, error) {
	if !idRE.MatchString(id) {
		return nil, nil, fmt.Errorf("%w: image id %q", ErrCorrupt, id)
	}
	var recs []imageRecord
	if err := s.readRecords(filepath.Join(s.Root, "overlay-images/images.json"), filepath.Join(s.Root, "overlay-images/images.lock"), &recs); err != nil {
		return nil, nil, fmt.Errorf("reading images: %w", err)
	}
	var rec *imageRecord
	for i := range recs {
		if recs[i].ID == id {
			rec = &recs[i]
		}
	}
	if rec == nil {
		return nil, nil, fmt.Errorf("%w: no image %s in %s", ErrNotFound, id, s.Root)
	}
	raw, err := readLimited(s.bigDataPath(id, "sha256:"+id))
	if err != nil {
		return nil, nil, fmt.Errorf("reading config of image %s: %w", id, err)
	}
	sum := sha256.Sum256(raw)
	if hex.EncodeToString(sum[:]) != id {
		return nil, nil, fmt.Errorf("%w: config of image %s has digest sha256:%x", ErrCorrupt, id, sum)
	}
	var cfg struct {
		RootFS struct {
			DiffIDs []v1.Hash `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, nil, fmt.Errorf("%w: config of image %s: %v", ErrCorrupt, id, err)
	}
	layers, err := s.layers()
	if err != nil {
		return nil, nil, err
	}
	var ls []*Layer
	if rec.Layer != "" {
		if ls, err = chain(layers, rec.Layer); err != nil {
			return nil, nil, fmt.Errorf("image %s: %w", id, err)
		}
	}
	if len(ls) != len(cfg.RootFS.DiffIDs) {
		return nil, nil, fmt.Errorf("%w: image %s has %d layers, its config lists %d", ErrCorrupt, id, len(ls), len(cfg.RootFS.DiffIDs))
	}
	bottom := make([]*Layer, len(ls))
	for i, l := range ls {
		n := len(ls) - 1 - i
		if l.DiffDigest != cfg.RootFS.DiffIDs[n] {
			return nil, nil, fmt.Errorf("%w: layer %s of image %s has diff digest %s, the config says %s", ErrCorrupt, l.ID, id, l.DiffDigest, cfg.RootFS.DiffIDs[n])
		}
		bottom[n] = l
	}
	return raw, bottom, nil
}
