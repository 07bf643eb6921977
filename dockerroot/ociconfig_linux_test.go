package dockerroot_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/dockerroot"
	"github.com/layercommit/layercommit/internal/oracle"
)

// TestCommitConfigMatchesDocker29ContainerdStore commits containers with
// the real Docker 29 on its containerd image store and rebuilds the
// image config and the manifest from the data root alone (the new
// layer's descriptor and diffID taken from dockerd's, which the diff
// package's containerd profile reproduces on its own): both must be
// byte for byte dockerd's, so the manifest digest, the image ID of that
// store, is the same.
func TestCommitConfigMatchesDocker29ContainerdStore(t *testing.T) {
	d := oracle.NewDocker29Containerd(t)
	root, err := dockerroot.OpenContainerd(d.Root)
	if err != nil {
		t.Fatal(err)
	}
	blobs := filepath.Join(d.Root, "containerd", "daemon", "io.containerd.content.v1.content", "blobs", "sha256")
	blob := func(t *testing.T, dg string) []byte {
		t.Helper()
		h := mustHash(t, dg)
		b, err := os.ReadFile(filepath.Join(blobs, h.Hex))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name    string
		run     []string
		commit  []string
		changes []string
	}{
		{name: "plain", run: []string{"sh", "-c", "echo hi > /data/x; touch /ready; exec sleep 3600"}},
		{name: "message and author", run: []string{"sh", "-c", "rm /data/basefile; touch /ready; exec sleep 3600"},
			commit: []string{"-m", "a message <&>", "-a", "Jane Doe <jane@example.com>"}},
		{name: "changes", run: []string{"sh", "-c", "mkdir -p /srv/a; touch /ready; exec sleep 3600"},
			commit: []string{"-m", "with changes"},
			changes: []string{"ENV FOO=bar", "EXPOSE 80/tcp", "EXPOSE 53/udp", "WORKDIR /srv", "LABEL a=b", "USER nobody",
				"CMD [\"/bin/sh\", \"-c\", \"echo hi\"]", "VOLUME /data", "ENTRYPOINT [\"/bin/env\"]",
				"HEALTHCHECK --interval=5s --retries=2 CMD true", "ONBUILD RUN true", "STOPSIGNAL SIGINT"}},
		{name: "empty diff", run: []string{"sh", "-c", "touch /ready; rm /ready; exec sleep 3600"}},
		{name: "control characters", run: []string{"sh", "-c", "echo \b\f; touch /ready; exec sleep 3600"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := d.Run(t, append([]string{"run", "-d", "--network", "none", "-e", "X=1", d.Base}, tc.run...)...)
			t.Cleanup(func() { d.Try("rm", "-f", id) })
			waitRootfs(t, d, id, tc.name == "empty diff")
			args := []string{"commit"}
			args = append(args, tc.commit...)
			for _, c := range tc.changes {
				args = append(args, "-c", c)
			}
			imageID := d.Run(t, append(args, id)...)
			t.Cleanup(func() { d.Try("rmi", imageID) })
			wantMan := blob(t, imageID)
			var m ocispec.Manifest
			if err := json.Unmarshal(wantMan, &m); err != nil {
				t.Fatal(err)
			}
			wantCfg := blob(t, m.Config.Digest.String())
			var dcfg struct {
				RootFS struct {
					DiffIDs []v1.Hash `json:"diff_ids"`
				} `json:"rootfs"`
			}
			if err := json.Unmarshal(wantCfg, &dcfg); err != nil {
				t.Fatal(err)
			}

			c, err := root.Container(id[:12])
			if err != nil {
				t.Fatal(err)
			}
			if c.Snapshotter != "overlayfs" || len(c.ImageManifest) == 0 {
				t.Fatalf("container %s: snapshotter %q, manifest %s", id, c.Snapshotter, c.ImageManifest)
			}
			var baseDesc ocispec.Descriptor
			if err := json.Unmarshal(c.ImageManifest, &baseDesc); err != nil {
				t.Fatal(err)
			}
			if baseDesc.Digest.String() != c.Image.String() {
				t.Fatalf("container's image %s is not its manifest's digest %s", c.Image, baseDesc.Digest)
			}
			var baseMan ocispec.Manifest
			if err := json.Unmarshal(blob(t, baseDesc.Digest.String()), &baseMan); err != nil {
				t.Fatal(err)
			}
			cc, err := dockerroot.DecodeContainerConfig(c.Config)
			if err != nil {
				t.Fatal(err)
			}
			cfg, containerCfg, err := dockerroot.ApplyChanges(cc, tc.changes)
			if err != nil {
				t.Fatal(err)
			}
			layers := baseMan.Layers
			empty := len(m.Layers) == len(baseMan.Layers)
			cm := dockerroot.CommitConfig{
				Parent: blob(t, baseMan.Config.Digest.String()), ContainerID: c.ID, Container: containerCfg,
				Config: cfg, OS: c.OS, Created: dockerCreated(t, wantCfg), DiffID: diff.EmptyDiffID, Empty: empty,
			}
			if !empty {
				cm.DiffID = dcfg.RootFS.DiffIDs[len(dcfg.RootFS.DiffIDs)-1]
				layers = append(layers, m.Layers[len(m.Layers)-1])
			}
			if (tc.name == "empty diff") != empty {
				t.Fatalf("dockerd's commit added %d layers", len(m.Layers)-len(baseMan.Layers))
			}
			for i := 0; i+1 < len(tc.commit); i += 2 {
				switch tc.commit[i] {
				case "-m":
					cm.Comment = tc.commit[i+1]
				case "-a":
					cm.Author = tc.commit[i+1]
				}
			}
			got, err := cm.EncodeOCI()
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(wantCfg) {
				t.Fatalf("config differs from dockerd's:\n got  %s\n want %s", got, wantCfg)
			}
			gotMan, err := dockerroot.ManifestOCI(got, layers)
			if err != nil {
				t.Fatal(err)
			}
			if string(gotMan) != string(wantMan) {
				t.Fatalf("manifest differs from dockerd's:\n got  %s\n want %s", gotMan, wantMan)
			}
			if empty && !strings.Contains(string(got), `"empty_layer":true`) {
				t.Error("an empty diff must give an empty_layer history entry")
			}
		})
	}
}

// waitRootfs waits until the container's command has made its changes:
// it creates /ready (and, with gone, removes it again), seen through the
// container's rootfs mount under the data root.
func waitRootfs(t *testing.T, d *oracle.Docker, id string, gone bool) {
	t.Helper()
	p := filepath.Join(d.Root, "rootfs", "overlayfs", id, "ready")
	for i := 0; i < 200; i++ {
		_, err := os.Stat(p)
		if gone {
			// The command ran if its sleep is the container's process.
			if top, _, _ := d.Try("top", id); err != nil && strings.Contains(top, "sleep") {
				return
			}
		} else if err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("container %s did not make its changes in 10s", id)
}
