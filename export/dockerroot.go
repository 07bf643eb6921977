package export

import (
	"context"
	"errors"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func init() { register(dockerRoot{}) }

// errDockerRoot is returned until the docker-root transport (reading and
// writing a Docker data root without a daemon) is written; replace this
// file with it.
var errDockerRoot = errors.New("docker-root: not supported yet")

type dockerRoot struct{}

func (dockerRoot) Name() string { return "docker-root" }

func (dockerRoot) Open(context.Context, string, *Options) (v1.Image, error) {
	return nil, errDockerRoot
}

func (dockerRoot) Destination(context.Context, string, *Options) (Destination, error) {
	return nil, errDockerRoot
}
