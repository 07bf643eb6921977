package export

import (
	"context"
	"fmt"
	"os"
	"regexp"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/containerdstore"
	"github.com/layercommit/layercommit/dockerroot"
	"github.com/layercommit/layercommit/internal/crashpoint"
)

func init() { register(dockerRoot{}) }

// dockerRoot is the docker-root: transport: a Docker data root read and
// written on disk, with no daemon (package dockerroot).
type dockerRoot struct{}

func (dockerRoot) Name() string { return "docker-root" }

func (dockerRoot) Open(ctx context.Context, rest string, o *Options) (v1.Image, error) {
	if rest == "" {
		return nil, fmt.Errorf("docker-root: wants NAME[:TAG] or an image ID")
	}
	root, err := dockerroot.Open(o.DockerRoot)
	if err != nil {
		if cd, ok := containerdStoreOf(o); ok {
			return containerd{}.Open(ctx, rest, cd)
		}
		return nil, err
	}
	id, err := root.ResolveImage(rest)
	if err != nil {
		return nil, err
	}
	return root.Image(ctx, id, o.Compat)
}

var idLike = regexp.MustCompile(`^(sha256:)?[0-9a-f]{12,64}$`)

func (dockerRoot) Destination(ctx context.Context, rest string, o *Options) (Destination, error) {
	if rest != "" && idLike.MatchString(rest) {
		return nil, fmt.Errorf("docker-root: destination %q looks like an image ID; give NAME[:TAG]", rest)
	}
	if rest != "" {
		if _, _, err := dockerroot.Familiar(rest); err != nil {
			return nil, err
		}
	}
	root, err := dockerroot.Open(o.DockerRoot)
	if err != nil {
		if cd, ok := containerdStoreOf(o); ok {
			// dockerd supervises the containerd holding the store:
			// it must be stopped, whatever --force says.
			if pid, running := dockerroot.DaemonUsing(o.DockerRoot); running {
				return nil, fmt.Errorf("dockerd (pid %d) is running on %s: stop it before writing into its containerd image store", pid, o.DockerRoot)
			}
			return containerd{}.Destination(ctx, rest, cd)
		}
		return nil, err
	}
	if !o.Force {
		if pid, ok := dockerroot.DaemonUsing(root.Dir); ok {
			return nil, fmt.Errorf("dockerd (pid %d) is running on %s: stop it first, or pass --force", pid, root.Dir)
		}
	}
	// New layer blobs wait in the data root's tmp dir, which its gc
	// cleans (dockerroot.GC).
	if err := os.MkdirAll(root.TmpDir(), 0o700); err != nil {
		return nil, err
	}
	blobs, err := newTempBlobs(root.TmpDir(), dockerroot.TempPrefix, true)
	if err != nil {
		return nil, err
	}
	return &rootDest{root: root, tag: rest, tempBlobs: blobs, o: o}, nil
}

// containerdStoreOf says whether o's Docker data root is on the
// containerd image store and gives the options of the containerd:
// transport that reach its images: the first containerd root of
// dockerroot.Root.ContainerdRoots holding a metadata db, namespace moby.
func containerdStoreOf(o *Options) (*Options, bool) {
	root, err := dockerroot.OpenContainerd(o.DockerRoot)
	if err != nil {
		return nil, false
	}
	for _, c := range root.ContainerdRoots() {
		if _, err := containerdstore.Open(c); err == nil {
			cd := *o
			cd.ContainerdRoot, cd.Namespace = c, containerdstore.NamespaceDocker
			return &cd, true
		}
	}
	return nil, false
}

type rootDest struct {
	root *dockerroot.Root
	tag  string
	tempBlobs
	o *Options
}

func (d *rootDest) PrefersOCI() bool { return false }

func (d *rootDest) Write(ctx context.Context, img v1.Image) error {
	_, err := d.root.Write(ctx, img, dockerroot.WriteOptions{
		Tag: d.tag, Parent: d.o.Parent, Profile: d.o.Compat, Force: d.o.Force,
		Checkpoint: func(name string) { crashpoint.At("docker-root-" + name) },
	})
	return err
}
