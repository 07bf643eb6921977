package main

import (
	"context"
	"fmt"
	"io"

	"github.com/layercommit/layercommit/commit"
	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/export"
)

func init() {
	register(command{"copy", "copy [--docker-root DIR] [--force] [--containerd-root DIR] [--namespace NS] SRC DEST", runCopy})
}

// runCopy copies an image from any source reference to any destination,
// e.g. out of a Docker data root into an OCI layout or a registry.
func runCopy(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("copy", stderr)
	dockerRoot := fs.String("docker-root", "/var/lib/docker", "Docker data root")
	force := fs.Bool("force", false, "write into a docker-root a live dockerd uses")
	containerdRoot := fs.String("containerd-root", "/var/lib/containerd", "containerd root for containerd: references")
	namespace := fs.String("namespace", "default", "containerd namespace for containerd: references (moby: Docker 29's store, k8s.io: Kubernetes)")
	profile := fs.String("compat", compat.Default.Name, "whose bytes to reproduce where layercommit writes them")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("copy: want SRC and DEST, got %d arguments", fs.NArg())
	}
	p, err := compat.Lookup(*profile)
	if err != nil {
		return err
	}
	id, err := commit.Copy(context.Background(), fs.Arg(0), fs.Arg(1),
		export.WithDockerRoot(*dockerRoot), export.WithForce(*force), export.WithCompat(p),
		export.WithContainerd(*containerdRoot, *namespace))
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, id)
	return nil
}
