package export

import (
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/layercommit/layercommit/internal/oracle"
)

// TestDockerRootContainerdStore reads and writes docker-root: images of a
// Docker 29 on its containerd image store: the base, read while dockerd
// runs, has the ID dockerd lists; a write is refused while it runs, and
// with it stopped lands where the restarted dockerd lists and runs it.
func TestDockerRootContainerdStore(t *testing.T) {
	d := oracle.StartDocker29Containerd(t)
	ctx := t.Context()
	opts := []Option{WithDockerRoot(d.Root)}
	base, err := Open(ctx, "docker-root:"+d.Base, opts...)
	if err != nil {
		t.Fatal(err)
	}
	got, err := base.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if want := d.Run(t, "image", "inspect", "-f", "{{.Id}}", d.Base); got.String() != want {
		t.Fatalf("docker-root:%s is %s, dockerd lists %s", d.Base, got, want)
	}
	if _, err := NewDestination(ctx, "docker-root:lc-root:1", opts...); err == nil || !strings.Contains(err.Error(), "stop it") {
		t.Fatalf("destination on a running dockerd: %v", err)
	}
	l, err := random.Layer(512, "application/vnd.docker.image.rootfs.diff.tar.gzip")
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(base, l)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	d.Stop(t)
	dest, err := NewDestination(ctx, "docker-root:lc-root:1", opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer dest.Close()
	if err := dest.Write(ctx, img); err != nil {
		t.Fatal(err)
	}
	d.Start(t)
	if id := d.Run(t, "image", "inspect", "-f", "{{.Id}}", "lc-root:1"); id != want.String() {
		t.Fatalf("dockerd lists lc-root:1 as %s, we wrote %s", id, want)
	}
	if out := d.Run(t, "run", "--rm", "--network", "none", "lc-root:1", "cat", "/data/basefile"); out != "base file" {
		t.Fatalf("docker run printed %q", out)
	}
}
