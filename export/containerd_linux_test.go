package export

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/layercommit/layercommit/containerdstore"
	"github.com/layercommit/layercommit/internal/oracle"
)

// TestContainerdDestination writes containerd:NAME into a stopped
// containerd (refused while it runs), which then lists and runs it, and
// reads it back as a source.
func TestContainerdDestination(t *testing.T) {
	c := oracle.StartContainerd(t, "2.3", "")
	ctx := t.Context()
	opts := []Option{WithContainerd(c.Root, c.Namespace)}
	base, err := Open(ctx, "containerd:"+c.Base, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewDestination(ctx, "containerd:lc-export:1", opts...); !errors.Is(err, containerdstore.ErrRunning) {
		t.Fatalf("destination on a running containerd: %v", err)
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
	c.Stop(t)
	d, err := NewDestination(ctx, "containerd:lc-export:1", opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Write(ctx, img); err != nil {
		t.Fatal(err)
	}
	c.Start(t)
	if ls := c.Run(t, "images", "ls"); !strings.Contains(ls, "docker.io/library/lc-export:1") || !strings.Contains(ls, want.String()) {
		t.Fatalf("ctr images ls:\n%s", ls)
	}
	if out := c.Run(t, "run", "--rm", "docker.io/library/lc-export:1", "lc-run", "echo", "ran"); out != "ran" {
		t.Fatalf("ctr run printed %q", out)
	}
	back, err := Open(ctx, "containerd:lc-export:1", opts...)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := back.Digest(); got != want {
		t.Fatalf("read back %s, wrote %s", got, want)
	}
}
