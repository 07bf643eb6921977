package dockerroot

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Root is a Docker data root laid out by the overlay2 graphdriver.
type Root struct {
	// Dir is the data root, e.g. /var/lib/docker.
	Dir string
	// Containerd says the root is Docker 29's containerd image store
	// (OpenContainerd): its images and container file systems live in a
	// containerd (namespace moby), and Container gives a container's
	// snapshotter and image manifest instead of its overlay2 dirs.
	Containerd bool
}

// Errors callers may test for.
var (
	ErrNotFound  = errors.New("not found")
	ErrAmbiguous = errors.New("ambiguous")
	ErrCorrupt   = errors.New("corrupt data root")
)

// Open checks that dir is a Docker data root written by the overlay2
// graphdriver.
func Open(dir string) (*Root, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("docker data root: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("docker data root %s is not a directory", dir)
	}
	r := &Root{Dir: dir}
	if _, err := os.Stat(r.imageDir()); err == nil {
		return r, nil
	}
	// Say what the root is instead, when it is something we know.
	if ents, err := os.ReadDir(filepath.Join(dir, "image")); err == nil && len(ents) > 0 {
		var drivers []string
		for _, e := range ents {
			drivers = append(drivers, e.Name())
		}
		return nil, fmt.Errorf("docker data root %s uses the %s storage driver; only the overlay2 graphdriver layout is supported", dir, strings.Join(drivers, ", "))
	}
	if _, err := os.Stat(filepath.Join(dir, "containerd", "daemon", "io.containerd.content.v1.content")); err == nil {
		return nil, fmt.Errorf("docker data root %s was written by the containerd image store; only the overlay2 graphdriver layout is supported", dir)
	}
	return nil, fmt.Errorf("%s is not a Docker data root (no image/overlay2)", dir)
}

// OpenContainerd checks that dir is the data root of a Docker whose
// images live in containerd (the containerd image store, Docker 29's
// default): it has containers but no overlay2 graphdriver layout.
func OpenContainerd(dir string) (*Root, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("docker data root: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("docker data root %s is not a directory", dir)
	}
	r := &Root{Dir: dir, Containerd: true}
	if _, err := os.Stat(r.imageDir()); err == nil {
		return nil, fmt.Errorf("docker data root %s uses the overlay2 graphdriver, not the containerd image store", dir)
	}
	if _, err := os.Stat(r.path("containers")); err != nil {
		return nil, fmt.Errorf("%s is not a Docker data root (no containers dir)", dir)
	}
	return r, nil
}

// ContainerdRoots are the containerd roots that may hold a containerd
// image store root's images and snapshots, in the order to probe them:
// the containerd dockerd supervises (<root>/containerd/daemon), then the
// system one (/var/lib/containerd) that a dockerd given --containerd
// uses.
func (r *Root) ContainerdRoots() []string {
	return []string{r.path("containerd", "daemon"), "/var/lib/containerd"}
}

func (r *Root) imageDir() string { return filepath.Join(r.Dir, "image", "overlay2") }

// path joins names below the data root.
func (r *Root) path(elem ...string) string {
	return filepath.Join(append([]string{r.Dir}, elem...)...)
}

var hexRE = regexp.MustCompile(`^[0-9a-f]+$`)

// validHex reports whether s is 64 lowercase hex digits.
func validHex(s string) bool { return len(s) == 64 && hexRE.MatchString(s) }

// Repositories is repositories.json: familiar name -> reference -> image ID.
type Repositories struct {
	Repositories map[string]map[string]string
}

// ReadRepositories reads repositories.json; a missing file is empty.
func (r *Root) ReadRepositories() (Repositories, error) {
	var repos Repositories
	b, err := os.ReadFile(filepath.Join(r.imageDir(), "repositories.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return Repositories{Repositories: map[string]map[string]string{}}, nil
	}
	if err != nil {
		return repos, fmt.Errorf("reading repositories.json: %w", err)
	}
	if err := json.Unmarshal(b, &repos); err != nil {
		return repos, fmt.Errorf("%w: repositories.json: %v", ErrCorrupt, err)
	}
	if repos.Repositories == nil {
		repos.Repositories = map[string]map[string]string{}
	}
	return repos, nil
}

// Familiar returns the repository and reference keys repositories.json
// uses for ref ("busybox" -> "busybox", "busybox:latest").
func Familiar(ref string) (repo, key string, err error) {
	tag, err := name.NewTag(ref)
	if err != nil {
		return "", "", fmt.Errorf("image name %q: %w", ref, err)
	}
	repo = tag.Context().RepositoryStr()
	if reg := tag.Context().RegistryStr(); reg != name.DefaultRegistry {
		repo = reg + "/" + repo
	} else {
		repo = strings.TrimPrefix(repo, "library/")
	}
	return repo, repo + ":" + tag.TagStr(), nil
}

// ResolveImage finds the image ref names: a full ID, a repositories.json
// name[:tag], or a unique ID prefix of at least 12 hex digits (with or
// without "sha256:").
func (r *Root) ResolveImage(ref string) (v1.Hash, error) {
	id := strings.TrimPrefix(ref, "sha256:")
	if validHex(id) {
		if _, err := os.Stat(r.contentPath(id)); err == nil {
			return v1.Hash{Algorithm: "sha256", Hex: id}, nil
		}
		return v1.Hash{}, fmt.Errorf("image %s: %w", ref, ErrNotFound)
	}
	if !strings.HasPrefix(ref, "sha256:") {
		if repo, key, err := Familiar(ref); err == nil {
			repos, err := r.ReadRepositories()
			if err != nil {
				return v1.Hash{}, err
			}
			if s, ok := repos.Repositories[repo][key]; ok {
				return v1.NewHash(s)
			}
		}
	}
	if len(id) >= 12 && hexRE.MatchString(id) {
		return r.resolvePrefix(id, r.contentDir(), "image")
	}
	return v1.Hash{}, fmt.Errorf("image %s: %w in %s", ref, ErrNotFound, r.Dir)
}

func (r *Root) resolvePrefix(prefix, dir, what string) (v1.Hash, error) {
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return v1.Hash{}, fmt.Errorf("listing %s: %w", dir, err)
	}
	var found []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) && validHex(e.Name()) {
			found = append(found, e.Name())
		}
	}
	switch len(found) {
	case 0:
		return v1.Hash{}, fmt.Errorf("%s %s: %w", what, prefix, ErrNotFound)
	case 1:
		return v1.Hash{Algorithm: "sha256", Hex: found[0]}, nil
	}
	sort.Strings(found)
	return v1.Hash{}, fmt.Errorf("%s ID prefix %s is %w: it matches %d %ss", what, prefix, ErrAmbiguous, len(found), what)
}

func (r *Root) contentDir() string {
	return filepath.Join(r.imageDir(), "imagedb", "content", "sha256")
}

func (r *Root) contentPath(hex string) string { return filepath.Join(r.contentDir(), hex) }

// maxConfigSize bounds what is read as an image config.
const maxConfigSize = 16 << 20

// RawConfig reads the config of image id, verifying that its sha256 is id.
func (r *Root) RawConfig(id v1.Hash) ([]byte, error) {
	if id.Algorithm != "sha256" || !validHex(id.Hex) {
		return nil, fmt.Errorf("image ID %s is not a sha256 digest", id)
	}
	b, err := readLimited(r.contentPath(id.Hex), maxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("reading config of image %s: %w", id, err)
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != id.Hex {
		return nil, fmt.Errorf("%w: config of image %s does not match its ID", ErrCorrupt, id)
	}
	return b, nil
}

func readLimited(p string, limit int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s is %d bytes, more than %d", p, fi.Size(), limit)
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil && fi.Size() > 0 {
		return nil, err
	}
	return b, nil
}

// readSmall reads a small metadata file (layerdb, overlay2) and trims
// nothing: Docker writes them without newlines.
func readSmall(p string) (string, error) {
	b, err := readLimited(p, 64<<10)
	return string(b), err
}
