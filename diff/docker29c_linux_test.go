package diff_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/internal/oracle"
	"github.com/layercommit/layercommit/layer"
)

// TestDocker29ContainerdStoreCommit: on Docker 29's containerd image
// store, docker commit of a running container with the conformance
// change set stores the layer the containerd profile writes over the
// container's snapshot dirs (its upper dir, its -init and image layers as
// the lowers, read from the running container's overlay mount), blob
// and tar byte for byte.
func TestDocker29ContainerdStoreCommit(t *testing.T) {
	d := oracle.NewDocker29Containerd(t)
	lowerID := container(t, d, d.Base)
	if err := fixtures.Apply(rootfsMount(t, lowerID).target, lowerTree()...); err != nil {
		t.Fatal(err)
	}
	tag := oracle.Tag("layercommit-cdiff-lower")
	d.Run(t, "commit", lowerID, tag)
	t.Cleanup(func() { d.Try("rmi", "-f", tag) })

	id := container(t, d, tag)
	m := rootfsMount(t, id)
	if err := fixtures.Apply(m.target, changeTree()...); err != nil {
		t.Fatal(err)
	}
	committed := oracle.Tag("layercommit-cdiff-commit")
	d.Run(t, "commit", id, committed)
	t.Cleanup(func() { d.Try("rmi", "-f", committed) })
	saved := d.SavedLayers(t, committed)
	wantBlob := saved[len(saved)-1]
	want := wantBlob
	if zr, err := gzip.NewReader(bytes.NewReader(wantBlob)); err == nil {
		if want, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	} else {
		t.Logf("docker save holds the layer uncompressed")
		wantBlob = nil
	}

	l, err := layer.Write(t.Context(), t.TempDir(), diff.Snapshot(m.lowers, m.upper, t.Logf),
		layer.WithDiffOptions(diff.WithCompat(compat.Containerd)))
	if err != nil {
		t.Fatal(err)
	}
	got := readBlob(t, l.Uncompressed)
	compareTars(t, "containerd profile vs Docker 29 (containerd store) commit", got, want)
	if gotBlob := readBlob(t, l.Compressed); wantBlob != nil && !bytes.Equal(gotBlob, wantBlob) {
		t.Errorf("tars equal, blobs differ: ours %s, docker's %s", sha(gotBlob), sha(wantBlob))
	}
	t.Logf("%d entries, diffID %s", len(tarIndex(got)), mustDiffID(t, l))
}

type rootfs struct {
	target, upper string
	lowers        []string
}

// rootfsMount finds the overlay Docker mounted as the container's root.
func rootfsMount(t *testing.T, id string) rootfs {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 || !strings.HasSuffix(f[4], "/"+id) {
			continue
		}
		var r rootfs
		r.target = f[4]
		for _, o := range strings.Split(f[len(f)-1], ",") {
			k, v, _ := strings.Cut(o, "=")
			switch k {
			case "lowerdir":
				r.lowers = strings.Split(v, ":")
			case "upperdir":
				r.upper = v
			}
		}
		if r.upper != "" && len(r.lowers) > 0 {
			return r
		}
	}
	t.Fatalf("no overlay mount of container %s in mountinfo", id)
	return rootfs{}
}
