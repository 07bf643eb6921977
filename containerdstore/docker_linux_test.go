package containerdstore

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	bolt "go.etcd.io/bbolt"

	"github.com/layercommit/layercommit/internal/oracle"
)

// contentLabels returns the labels of blob d's record in ns.
func contentLabels(t *testing.T, s *Store, ns string, d v1.Hash) map[string]string {
	t.Helper()
	var labels map[string]string
	err := view(s.metaDB(), func(tx *bolt.Tx) error {
		b := bucket(tx, keyV1, []byte(ns), keyContent, keyBlob, []byte(d.String()))
		if b == nil {
			t.Fatalf("no content record of %s in %s", d, ns)
		}
		labels = readLabels(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return labels
}

func keys(m map[string]string) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	sort.Strings(k)
	return k
}

// TestDocker29 reads a Docker 29 container's snapshot from the containerd
// store Docker supervises while it runs, compares our records with those
// of a real `docker commit`, then writes images into the stopped store:
// the restarted dockerd lists them under Docker's names (a replaced tag
// leaves its image as moby-dangling@), keeps them through a gc and runs
// them.
func TestDocker29(t *testing.T) {
	d := oracle.StartDocker29Containerd(t)
	s, err := Open(DockerRoot(d.Root))
	if err != nil {
		t.Fatal(err)
	}
	id := d.Run(t, "run", "--name", "lc-src", d.Base, "sh", "-c", "mkdir /lc && echo from-docker > /lc/file")
	_ = id
	cid := d.Run(t, "inspect", "--format", "{{.Id}}", "lc-src")

	// The container's rootfs: key = container ID, parent <id>-init.
	sn, err := s.Snapshot(NamespaceDocker, cid)
	if err != nil {
		t.Fatal(err)
	}
	if sn.Kind != KindActive || sn.Parent != cid+"-init" {
		t.Fatalf("container snapshot %+v", sn)
	}
	if b, err := os.ReadFile(filepath.Join(sn.UpperDir, "lc", "file")); err != nil || string(b) != "from-docker\n" {
		t.Fatalf("upper dir %s: %q %v", sn.UpperDir, b, err)
	}
	if _, err := s.Snapshot(NamespaceKubernetes, cid); err == nil {
		t.Fatal("found a moby snapshot in k8s.io")
	}

	// What a real docker commit records.
	refID := d.Run(t, "commit", "lc-src", "lc-ref:1")
	ref, err := s.Image(NamespaceDocker, "docker.io/library/lc-ref:1")
	if err != nil {
		t.Fatal(err)
	}
	if ref.Target.Digest.String() != refID {
		t.Fatalf("docker commit printed %s, its record targets %s", refID, ref.Target.Digest)
	}
	if _, err := s.Image(NamespaceDocker, DanglingPrefix+refID); err == nil {
		t.Fatal("docker commit with a tag left its dangling record")
	}
	refImg, err := s.V1Image(NamespaceDocker, ref.Name, v1.Platform{OS: "linux", Architecture: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	refMan, _ := refImg.Manifest()
	refManLabels := contentLabels(t, s, NamespaceDocker, ref.Target.Digest)
	t.Logf("docker commit: image labels %v, manifest labels %v", ref.Labels, refManLabels)
	for _, l := range refMan.Layers {
		t.Logf("docker commit: layer %s labels %v", l.Digest, contentLabels(t, s, NamespaceDocker, l.Digest))
	}
	t.Logf("docker commit: config labels %v", contentLabels(t, s, NamespaceDocker, refMan.Config.Digest))

	// Two images from the base; the second takes the first's tag.
	base, err := s.V1Image(NamespaceDocker, "docker.io/library/"+d.Base, v1.Platform{OS: "linux", Architecture: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	img1 := addFile(t, base, "lc/hello", "first\n")
	img2 := addFile(t, base, "lc/hello", "second\n")
	d.Stop(t)
	controls := []string{orphan(t, s, NamespaceDocker, false), orphan(t, s, NamespaceDocker, true)}
	name := "docker.io/library/lc-write:1"
	desc1, err := s.WriteImage(img1, WriteOptions{Namespace: NamespaceDocker, Names: []string{name}})
	if err != nil {
		t.Fatal(err)
	}
	desc2, err := s.WriteImage(img2, WriteOptions{Namespace: NamespaceDocker, Names: []string{name}})
	if err != nil {
		t.Fatal(err)
	}
	// Our manifest record is labelled as Docker's is: the same keys
	// (content.0 the config, content.1.. the layers) for as many layers.
	ours := contentLabels(t, s, NamespaceDocker, desc2.Digest)
	m2, _ := img2.Manifest()
	if len(m2.Layers) == len(refMan.Layers) && !slices.Equal(keys(ours), keys(refManLabels)) {
		t.Fatalf("manifest labels: ours %v, docker commit's %v", ours, refManLabels)
	}
	if ours[LabelGCRefContent+".0"] != m2.Config.Digest.String() {
		t.Fatalf("manifest labels %v", ours)
	}
	d.Start(t)

	if got := d.Run(t, "image", "inspect", "--format", "{{.Id}}", "lc-write:1"); got != desc2.Digest.String() {
		t.Fatalf("lc-write:1 is %s, want %s", got, desc2.Digest)
	}
	dangling := d.Run(t, "images", "--no-trunc", "-q", "--filter", "dangling=true")
	if !strings.Contains(dangling, desc1.Digest.String()) {
		t.Fatalf("the replaced image %s is not dangling:\n%s", desc1.Digest, dangling)
	}
	if _, err := s.Image(NamespaceDocker, DanglingPrefix+desc1.Digest.String()); err != nil {
		t.Fatal(err)
	}
	// A synchronous delete of an unrelated image runs containerd's gc.
	ctr := filepath.Join(os.Getenv("LAYERCOMMIT_CONTAINERD2_BIN"), "ctr")
	ctrArgs := []string{"--address", d.ContainerdAddress(), "--namespace", NamespaceDocker}
	run := func(args ...string) string {
		out, err := execOut(ctr, append(ctrArgs, args...)...)
		if err != nil {
			t.Fatalf("ctr %v: %v\n%s", args, err, out)
		}
		return out
	}
	run("images", "tag", "docker.io/library/"+d.Base, "docker.io/library/lc-unrelated:1")
	run("images", "rm", "--sync", "docker.io/library/lc-unrelated:1")
	for _, control := range controls {
		if _, err := os.Stat(control); !os.IsNotExist(err) {
			t.Fatalf("the gc did not run: control blob %s is still there (%v)", control, err)
		}
	}
	content := run("content", "ls")
	for _, img := range []v1.Image{img1, img2} {
		for _, dg := range blobs(t, img) {
			if !strings.Contains(content, dg) {
				t.Fatalf("blob %s was collected; ctr content ls:\n%s", dg, content)
			}
		}
	}
	if out := d.Run(t, "run", "--rm", "lc-write:1", "cat", "/lc/hello"); out != "second" {
		t.Fatalf("docker run lc-write:1 printed %q", out)
	}
	if out := d.Run(t, "run", "--rm", desc1.Digest.String(), "cat", "/lc/hello"); out != "first" {
		t.Fatalf("docker run of the dangling image printed %q", out)
	}
}
