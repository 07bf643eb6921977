package export

import (
	"context"
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/containerdstore"
)

func init() { register(containerd{}) }

// containerd is the containerd: transport: an image of a containerd root
// (--containerd-root) in one namespace (--namespace), read and written on
// disk with no daemon (package containerdstore). NAME is normalised as
// docker and ctr store it (app:1 is docker.io/library/app:1); a name
// that is already full, such as moby-dangling@sha256:..., is read as it
// is.
type containerd struct{}

func (containerd) Name() string { return "containerd" }

func (containerd) Open(_ context.Context, rest string, o *Options) (v1.Image, error) {
	if rest == "" {
		return nil, errors.New("containerd: wants NAME[:TAG], as in containerd:docker.io/library/app:1")
	}
	s, err := containerdstore.Open(o.ContainerdRoot)
	if err != nil {
		return nil, err
	}
	name := rest
	if full, err := NormalizeName(rest); err == nil {
		if _, err := s.Image(o.Namespace, full); err == nil {
			name = full
		}
	}
	img, err := s.V1Image(o.Namespace, name, o.Platform)
	if err != nil {
		return nil, err
	}
	return check(img)
}

func (containerd) Destination(_ context.Context, rest string, o *Options) (Destination, error) {
	var names []string
	if rest != "" {
		full, err := NormalizeName(rest)
		if err != nil {
			return nil, err
		}
		names = []string{full}
	} else if o.Namespace != containerdstore.NamespaceDocker {
		return nil, fmt.Errorf("containerd: wants NAME[:TAG] (only namespace %s records untagged images)", containerdstore.NamespaceDocker)
	}
	s, err := containerdstore.Open(o.ContainerdRoot)
	if err != nil {
		return nil, err
	}
	// containerdstore.Destination refuses a running daemon before any
	// blob is made and keeps new blobs under the root.
	return s.Destination(o.Namespace, containerdstore.WriteOptions{Names: names})
}
