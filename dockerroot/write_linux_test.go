package dockerroot_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/dockerroot"
	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/image"
	"github.com/layercommit/layercommit/internal/oracle"
	"github.com/layercommit/layercommit/layer"
)

// TestWriteIntoStoppedDaemon commits a container without dockerd into its
// data root and checks with the restarted daemon that the image has the
// ID docker commit gives, lists, runs, saves byte for byte as docker
// commit's layer, removes cleanly and can be committed on top of.
func TestWriteIntoStoppedDaemon(t *testing.T) {
	d := oracle.StartDaemon(t)
	id := d.Run(t, "run", "-d", "--network", "none", d.Base, "sleep", "3600")
	if err := fixtures.Apply(d.Run(t, "inspect", "-f", "{{.GraphDriver.Data.MergedDir}}", id),
		fixtures.CreateFile("data/basefile", []byte("modified\n"), 0o644),
		fixtures.CreateDir("data/new/deep", 0o750),
		fixtures.CreateFile("data/new/deep/file", []byte("new file\n"), 0o600),
		fixtures.Remove("tmp"),
		fixtures.CreateDir("tmp", 0o1777),
		fixtures.CreateFile("tmp/x", nil, 0o644),
		fixtures.Remove("root"),
		fixtures.Symlink("/data/basefile", "data/link"),
		fixtures.Link("data/new/deep/file", "data/hard"),
	); err != nil {
		t.Fatal(err)
	}
	d.Run(t, "stop", "-t", "0", id)
	// The reference: dockerd's own commit of the same container.
	refID := d.Run(t, "commit", "-m", "ref", "-a", "me", id, "ref:1")
	refLayers := d.SavedLayers(t, "ref:1")
	ref, err := dockerroot.Open(d.Root)
	if err != nil {
		t.Fatal(err)
	}
	refCfg, err := ref.RawConfig(mustHash(t, refID))
	if err != nil {
		t.Fatal(err)
	}
	d.Run(t, "rmi", "ref:1")

	d.Stop(t)
	root, err := dockerroot.Open(d.Root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := root.Container(id)
	if err != nil {
		t.Fatal(err)
	}
	base, err := root.Image(ctx, c.Image, compat.Docker2010)
	if err != nil {
		t.Fatal(err)
	}
	l, err := layer.Write(ctx, t.TempDir(), diff.Overlay(c.UpperDir), layer.WithDiffOptions(diff.WithCompat(compat.Docker2010)), layer.WithDockerMediaTypes(true))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := dockerroot.DecodeContainerConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg, ccfg, err := dockerroot.ApplyChanges(cc, nil)
	if err != nil {
		t.Fatal(err)
	}
	diffID, _ := l.DiffID()
	parent, _ := root.RawConfig(c.Image)
	raw, err := dockerroot.CommitConfig{Parent: parent, ContainerID: c.ID, Container: ccfg, Config: cfg, OS: c.OS,
		Author: "me", Comment: "ref", Created: dockerCreated(t, refCfg), DockerVersion: compat.Docker2010.DockerVersion,
		DiffID: diffID}.Encode(compat.Docker2010)
	if err != nil {
		t.Fatal(err)
	}
	img, err := image.WithRawConfig(base, l, raw)
	if err != nil {
		t.Fatal(err)
	}
	got, err := root.Write(ctx, img, dockerroot.WriteOptions{Tag: "ours:1", Parent: c.Image, Profile: compat.Docker2010})
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != refID {
		t.Errorf("image ID %s, docker commit gave %s", got, refID)
	}

	assertModesLikeDockers(t, root, base, got)

	d.Start(t)
	if listed := d.Run(t, "images", "--no-trunc", "-q", "ours:1"); listed != refID {
		t.Fatalf("docker images lists %q for ours:1, want %s\n%s", listed, refID, d.Log())
	}
	out := d.Run(t, "run", "--rm", "--network", "none", "ours:1", "sh", "-c",
		"cat /data/basefile /data/new/deep/file /data/link; ls -A /tmp; stat -c %A /tmp; test -e /root || echo no-root")
	if want := "modified\nnew file\nmodified\nx\ndrwxrwxrwt\nno-root"; out != want {
		t.Errorf("docker run shows:\n%s\nwant:\n%s", out, want)
	}
	ourLayers := d.SavedLayers(t, "ours:1")
	if len(ourLayers) != len(refLayers) || !bytes.Equal(ourLayers[len(ourLayers)-1], refLayers[len(refLayers)-1]) {
		t.Errorf("docker save of our image: top layer differs from docker commit's (%d vs %d layers)", len(ourLayers), len(refLayers))
	}
	// A commit on top of it works.
	id2 := d.Run(t, "run", "-d", "--network", "none", "ours:1", "sh", "-c", "echo more > /data/more")
	d.Run(t, "wait", id2)
	d.Run(t, "commit", id2, "ours:2")
	if out := d.Run(t, "run", "--rm", "--network", "none", "ours:2", "cat", "/data/more", "/data/basefile"); out != "more\nmodified" {
		t.Errorf("image committed on top shows %q", out)
	}
	d.Run(t, "rm", id2)
	d.Run(t, "rmi", "ours:2")
	d.Run(t, "rmi", "ours:1")
	if _, err := os.Stat(filepath.Join(d.Root, "image/overlay2/imagedb/content/sha256", got.Hex)); !os.IsNotExist(err) {
		t.Errorf("docker rmi left the config: %v", err)
	}
}

// TestWriteRefusesLiveDaemon checks the running-daemon guard.
func TestWriteRefusesLiveDaemon(t *testing.T) {
	d := oracle.StartDaemon(t)
	root, err := dockerroot.Open(d.Root)
	if err != nil {
		t.Fatal(err)
	}
	img, err := root.Image(context.Background(), mustHash(t, d.Run(t, "images", "--no-trunc", "-q", d.Base)), compat.Docker2010)
	if err != nil {
		t.Fatal(err)
	}
	_, err = root.Write(context.Background(), img, dockerroot.WriteOptions{Tag: "x:1"})
	if err == nil || !strings.Contains(err.Error(), "dockerd") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("want a refusal naming dockerd and --force, got %v", err)
	}
}

// assertModesLikeDockers compares the modes (and the absence of trailing
// newlines) of what Write made with those dockerd made for the base layer,
// and with FORMAT.md where the base has no counterpart (lower, work).
func assertModesLikeDockers(t *testing.T, root *dockerroot.Root, base v1.Image, id v1.Hash) {
	t.Helper()
	info, err := root.Describe(id.String())
	if err != nil {
		t.Fatal(err)
	}
	dockers, ours := info.Layers[0], info.Layers[len(info.Layers)-1]
	mode := func(p string) os.FileMode {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode()
	}
	layerdb := func(l dockerroot.Layer) string {
		return filepath.Join(root.Dir, "image/overlay2/layerdb", l.ChainID.Algorithm, l.ChainID.Hex)
	}
	overlay := func(l dockerroot.Layer) string { return filepath.Dir(l.DiffDir) }
	for _, name := range []string{"", "diff", "size", "cache-id", "tar-split.json.gz"} {
		if a, b := mode(filepath.Join(layerdb(ours), name)), mode(filepath.Join(layerdb(dockers), name)); a != b {
			t.Errorf("layerdb %q: mode %v, dockerd's %v", name, a, b)
		}
	}
	for _, name := range []string{"", "diff", "link"} {
		if a, b := mode(filepath.Join(overlay(ours), name)), mode(filepath.Join(overlay(dockers), name)); a != b {
			t.Errorf("overlay2 %q: mode %v, dockerd's %v", name, a, b)
		}
	}
	for name, want := range map[string]os.FileMode{"lower": 0o644, "work": os.ModeDir | 0o700} {
		if got := mode(filepath.Join(overlay(ours), name)); got != want {
			t.Errorf("overlay2 %q: mode %v, want %v", name, got, want)
		}
	}
	if got := mode(filepath.Join(layerdb(ours), "parent")); got != 0o644 {
		t.Errorf("layerdb parent: mode %v", got)
	}
	for _, p := range []string{filepath.Join(layerdb(ours), "diff"), filepath.Join(layerdb(ours), "parent"), filepath.Join(overlay(ours), "link"), filepath.Join(overlay(ours), "lower")} {
		if b, _ := os.ReadFile(p); strings.HasSuffix(string(b), "\n") {
			t.Errorf("%s ends in a newline", p)
		}
	}
	if target, err := os.Readlink(filepath.Join(root.Dir, "overlay2/l", ours.Link)); err != nil || target != "../"+filepath.Base(overlay(ours))+"/diff" {
		t.Errorf("l/%s -> %q, %v", ours.Link, target, err)
	}
	if _, err := os.Stat(filepath.Join(overlay(dockers), "committed")); err != nil {
		t.Errorf("the parent layer has no committed file: %v", err)
	}
}
