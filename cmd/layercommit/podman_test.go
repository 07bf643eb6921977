package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/containersstorage"
	"github.com/layercommit/layercommit/dockerroot"
	"github.com/layercommit/layercommit/internal/oracle"
)

// podmanScript is what the committed podman containers run: changes of
// each kind (modify, delete, new dir, a file in the workdir podman made),
// then /ready, then sleep.
const podmanScript = "echo changed > /etc/motd; rm /etc/group; mkdir -p /newdir/sub; echo hi > /newdir/f; echo w > /data/w; ln /newdir/f /newdir/hl; touch /ready; exec sleep 3600"

// startPodman runs a detached podman container with run flags args and
// waits for its script to finish its changes.
func startPodman(t *testing.T, p *oracle.Podman, args ...string) string {
	t.Helper()
	flags := oracle.RunFlags
	if slices.Contains(args, "--network") {
		// args name the network: the rest of RunFlags only.
		flags = nil
		for i := 0; i < len(oracle.RunFlags); i++ {
			if oracle.RunFlags[i] == "--network" {
				i++
				continue
			}
			flags = append(flags, oracle.RunFlags[i])
		}
	}
	run := append(append(append([]string{"run", "-d"}, flags...), args...), p.Base, "-c", podmanScript)
	id := p.Run(t, run...)
	s, err := containersstorage.Open(p.Root, p.RunRoot)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Container(id)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Lstat(filepath.Join(c.UpperDir, "ready")); err == nil {
			return id
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s never made /ready", id)
		}
	}
}

// TestCommitPodmanContainer commits running podman containers from the
// store on disk, with no podman call, and with podman commit: the layer
// bytes and every config field podman sets must be equal, the printed ID
// must be the config digest, and podman must load and run what we wrote
// (docker-archive: and oci:) with the container's changes in it.
func TestCommitPodmanContainer(t *testing.T) {
	p := oracle.NewPodman(t)
	cases := []struct {
		name, format string
		run, flags   []string
		// stop stops the container before both commits.
		stop bool
	}{
		{"plain", "", []string{"--entrypoint", "/bin/sh"}, nil, false},
		{"run config", "", []string{"-e", "FOO=bar", "-e", "PATH=/bin", "-w", "/data", "--label", "a=b", "-u", "0:0", "-v", "/anon", "--entrypoint", "/bin/sh"}, nil, false},
		{"author and changes", "", []string{"-w", "/data", "--label", "a=b", "--entrypoint", "/bin/sh"}, []string{"-a", "Ann <ann@example.com>",
			"-c", "ENV Z=1", "-c", "ENV FOO=over", "-c", "CMD [\"cat\", \"/etc/motd\"]", "-c", "LABEL x=y", "-c", "LABEL a=c", "-c", "WORKDIR /w",
			"-c", "USER 1:2", "-c", "EXPOSE 8080", "-c", "VOLUME /v", "-c", "STOPSIGNAL SIGINT"}, false},
		{"entrypoint change", "", []string{"-w", "/data", "--entrypoint", "/bin/sh"}, []string{"-c", "ENTRYPOINT [\"/bin/cat\"]"}, false},
		{"docker format", "docker", []string{"-w", "/data", "--label", "a=b", "-v", "/anon", "-v", "lcnamed:/named", "--entrypoint", "/bin/sh"}, nil, false},
		{"docker format with message and changes", "docker", []string{"-e", "FOO=bar", "--entrypoint", "/bin/sh"}, []string{"-m", "saved", "-a", "Ann",
			"-c", "ENV Z=1", "-c", "ONBUILD RUN true", "-c", "EXPOSE 53/udp", "-c", "STOPSIGNAL 9", "-c", "CMD sleep 1"}, false},
		{"stopped", "", []string{"-w", "/data", "--entrypoint", "/bin/sh"}, []string{"-c", "ENV S=1"}, true},
		{"exposed ports", "docker", []string{"--network", "host", "--expose", "9000", "--expose", "53/udp", "--entrypoint", "/bin/sh"}, []string{"-c", "EXPOSE 8080"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := startPodman(t, p, tc.run...)
			if tc.stop {
				p.Run(t, "stop", "-t", "0", id)
			}
			ref := "localhost/podman-commit:" + id[:12]
			pargs, ours := append([]string{"commit", "-q"}, tc.flags...), tc.flags
			if tc.format != "" {
				pargs, ours = append(pargs, "-f", tc.format), append(ours, "--format", tc.format)
			}
			podmanID := p.Run(t, append(pargs, id, ref)...)
			wantLayers, _ := p.SavedLayers(t, ref)
			wantRaw, err := os.ReadFile(filepath.Join(p.Root, "overlay-images", podmanID, "="+base64.StdEncoding.EncodeToString([]byte("sha256:"+podmanID))))
			if err != nil {
				t.Fatal(err)
			}
			// podman stamps the config and the new history entry with two
			// clocks readings: ours, at podman's config time, must be
			// podman's bytes with the entry at that time too.
			var times struct {
				Created string `json:"created"`
				History []struct {
					Created string `json:"created"`
				} `json:"history"`
			}
			if err := json.Unmarshal(wantRaw, &times); err != nil || len(times.History) == 0 {
				t.Fatalf("podman's config %s: %v", wantRaw, err)
			}
			last := times.History[len(times.History)-1].Created
			wantRaw = bytes.Replace(wantRaw, []byte(`"created":"`+last+`"`), []byte(`"created":"`+times.Created+`"`), 1)

			dir := filepath.Join(t.TempDir(), "layout")
			args := append([]string{"commit", "--runtime", "podman", "--storage-root", p.Root, "--run-root", p.RunRoot,
				"--container", id[:12], "--created", times.Created, "-q", "-o", "oci:" + dir + ":c"}, ours...)
			gotID, _ := lc(t, false, args...)
			img := checkImage(t, "oci:"+dir+":c")
			raw, err := img.RawConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if name, _ := img.ConfigName(); name.String() != gotID {
				t.Fatalf("printed %s, config digest %s", gotID, name)
			}
			if !bytes.Equal(raw, wantRaw) {
				t.Errorf("config\n got %s\nwant %s", raw, wantRaw)
			}
			layers, err := img.Layers()
			if err != nil || len(layers) != len(wantLayers) {
				t.Fatalf("%d layers (%v), podman's image has %d", len(layers), err, len(wantLayers))
			}
			for i, l := range layers {
				rc, err := l.Uncompressed()
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					t.Fatalf("layer %d: %v", i, err)
				}
				if !bytes.Equal(b, wantLayers[i]) {
					t.Errorf("layer %d: %d bytes, podman commit's has %d and differs", i, len(b), len(wantLayers[i]))
				}
			}
		})
	}

	// The shaping flags take the podman path too: an excluded deletion
	// keeps the base's file, an excluded new file is gone, mtimes and the
	// created time are clamped to --source-date-epoch.
	t.Run("exclude and source-date-epoch", func(t *testing.T) {
		id := startPodman(t, p, "-w", "/data", "--entrypoint", "/bin/sh")
		out := filepath.Join(t.TempDir(), "s.tar")
		gotID, _ := lc(t, false, "commit", "--storage-root", p.Root, "--run-root", p.RunRoot, "--container", id, "-q",
			"--exclude", "etc/group", "--exclude", "newdir/hl", "--source-date-epoch", "1600000000", "-o", "docker-archive:"+out)
		p.Run(t, "load", "-q", "-i", out)
		got := p.Run(t, append(append([]string{"run", "--rm"}, oracle.RunFlags...), gotID,
			"-c", "test -s /etc/group && echo group; test -e /newdir/hl || echo nohl; stat -c %Y /newdir/f")...)
		if got != "group\nnohl\n1600000000" {
			t.Errorf("podman run printed %q", got)
		}
		if created := p.Run(t, "image", "inspect", "--format", "{{.Created.Unix}}", gotID); created != "1600000000" {
			t.Errorf("created %s, want 1600000000", created)
		}
	})

	t.Run("podman loads and runs it", func(t *testing.T) {
		id := startPodman(t, p, "-w", "/data", "--entrypoint", "/bin/sh")
		// podman pull names an oci: image after its path: lower case only.
		dir, err := os.MkdirTemp("", "lcpodman")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		for _, dest := range []struct{ ref, load string }{
			{"docker-archive:" + filepath.Join(dir, "a.tar"), "load"},
			{"oci:" + filepath.Join(dir, "layout") + ":v1", "pull"},
		} {
			// Running, so --pause (the default) freezes it meanwhile.
			gotID, _ := lc(t, false, "commit", "--storage-root", p.Root, "--run-root", p.RunRoot, "--container", id, "-q", "-o", dest.ref)
			if dest.load == "load" {
				out := p.Run(t, "load", "-q", "-i", strings.TrimPrefix(dest.ref, "docker-archive:"))
				if !strings.Contains(out, gotID) {
					t.Fatalf("podman load said %q, we printed %s", out, gotID)
				}
			} else {
				p.Run(t, "pull", "-q", dest.ref)
			}
			if listed := "sha256:" + p.Run(t, "images", "--no-trunc", "-q", "--filter", "id="+strings.TrimPrefix(gotID, "sha256:")); !strings.Contains(listed, strings.TrimPrefix(gotID, "sha256:")) {
				t.Fatalf("podman images lists %q, we printed %s", listed, gotID)
			}
			out := p.Run(t, append(append([]string{"run", "--rm"}, oracle.RunFlags...), gotID,
				"-c", "cat /etc/motd /newdir/f /data/w; test -e /etc/group && echo group; pwd")...)
			if out != "changed\nhi\nw\n/data" {
				t.Errorf("%s: podman run of our image printed %q", dest.ref, out)
			}
		}
		// --from the store by a short name is the container's image: the
		// same image ID as without --from.
		var fromIDs []string
		for _, from := range [][]string{nil, {"--from", "containers-storage:" + strings.TrimPrefix(p.Base, "localhost/")}} {
			got, _ := lc(t, false, append([]string{"commit", "--storage-root", p.Root, "--run-root", p.RunRoot, "--container", id, "-q",
				"--created", testCreated, "-o", "oci:" + filepath.Join(dir, "from") + ":x"}, from...)...)
			fromIDs = append(fromIDs, got)
		}
		if fromIDs[0] != fromIDs[1] {
			t.Errorf("--from containers-storage:%s gave %s, the container's image %s", p.Base, fromIDs[1], fromIDs[0])
		}

		// Into the store itself: podman lists it by name and ID, runs it,
		// and, committed again under the name, moves the name as podman
		// tagging does; podman rmi removes both cleanly.
		var ids []string
		for i := 0; i < 2; i++ {
			// The second in podman's docker format, with a message.
			format := [][]string{nil, {"--format", "docker", "-m", "again"}}[i]
			gotID, _ := lc(t, false, append([]string{"commit", "--storage-root", p.Root, "--run-root", p.RunRoot, "--container", id, "-q",
				"-c", fmt.Sprintf("LABEL n=%d", i), "-o", "containers-storage:lc-commit:v1"}, format...)...)
			ids = append(ids, gotID)
			if got := p.Run(t, "images", "--no-trunc", "--format", "{{.ID}}", "localhost/lc-commit:v1"); got != gotID {
				t.Fatalf("podman images lists localhost/lc-commit:v1 as %q, we printed %s", got, gotID)
			}
			// podman save rebuilds each layer from the tar-split we
			// recorded: the bytes must hash to the config's diffIDs.
			saved, cfg := p.SavedLayers(t, "localhost/lc-commit:v1")
			var rootfs struct {
				RootFS struct {
					DiffIDs []string `json:"diff_ids"`
				} `json:"rootfs"`
			}
			json.Unmarshal(cfg, &rootfs)
			if len(saved) != len(rootfs.RootFS.DiffIDs) {
				t.Fatalf("podman save: %d layers, config lists %d", len(saved), len(rootfs.RootFS.DiffIDs))
			}
			for n, b := range saved {
				if sum := sha256.Sum256(b); "sha256:"+hex.EncodeToString(sum[:]) != rootfs.RootFS.DiffIDs[n] {
					t.Errorf("podman save layer %d has sha256:%x, the config says %s", n, sum, rootfs.RootFS.DiffIDs[n])
				}
			}
			out := p.Run(t, append(append([]string{"run", "--rm"}, oracle.RunFlags...), "lc-commit:v1",
				"-c", "cat /etc/motd /newdir/f /data/w; test -e /etc/group && echo group; pwd")...)
			if out != "changed\nhi\nw\n/data" {
				t.Errorf("podman run of lc-commit:v1 printed %q", out)
			}
		}
		if ids[0] == ids[1] {
			t.Fatalf("two commits with different labels gave one ID %s", ids[0])
		}
		if got := p.Run(t, "image", "inspect", "--format", "{{.Comment}}", ids[1]); got != "again" {
			t.Errorf("podman reads the docker-format image's comment as %q", got)
		}
		if got := p.Run(t, "image", "inspect", "--format", "{{.RepoTags}}", ids[0]); got != "[]" {
			t.Errorf("the first image still has names %s", got)
		}
		p.Run(t, "rmi", ids[0], ids[1])

		c, err := func() (*containersstorage.LibpodContainer, error) {
			s, err := containersstorage.Open(p.Root, p.RunRoot)
			if err != nil {
				return nil, err
			}
			return s.Libpod(id)
		}()
		if err != nil || !c.Running() || c.State.Pid == 0 {
			t.Fatalf("libpod state %+v: %v", c, err)
		}
		if s, _ := dockerroot.FrozenState(c.State.Pid); s == "FROZEN" || s == "frozen 1" {
			t.Errorf("commit left the container %q", s)
		}
	})
}

// TestCommitPodmanBadInput: each bad input is one line naming the
// problem, a non-zero exit and nothing written.
func TestCommitPodmanBadInput(t *testing.T) {
	p := oracle.NewPodman(t)
	id := startPodman(t, p, "--entrypoint", "/bin/sh")
	bothName := fmt.Sprintf("lc-both-%d", time.Now().UnixNano())
	startPodman(t, p, "--name", bothName, "--entrypoint", "/bin/sh")
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) (root string)
		ref   string
		args  []string
		msg   string
		// auto leaves --runtime out: the store holding ref is taken.
		auto bool
	}{
		{name: "unknown container", ref: "nope", msg: `no container "nope"`},
		{name: "wrong storage root", setup: func(t *testing.T) string { return t.TempDir() }, ref: id, msg: "not a containers-storage overlay store"},
		{name: "libpod database locked by a live podman", setup: func(t *testing.T) string {
			f, err := os.Open(filepath.Join(p.Root, "libpod/bolt_state.db"))
			if err != nil {
				t.Fatal(err)
			}
			// A podman command holds bolt's exclusive flock while it runs.
			if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return p.Root
		}, ref: id, msg: "bolt_state.db held by another process"},
		{name: "in both stores", setup: func(t *testing.T) string {
			d := oracle.NewDocker(t)
			cid := d.Run(t, "run", "-d", "--network", "none", "--name", bothName, d.Base, "sleep", "3600")
			t.Cleanup(func() { d.Try("rm", "-f", cid) })
			return p.Root
		}, ref: bothName, auto: true, msg: "is in both the Docker data root"},
		{name: "message in the OCI format", ref: id, args: []string{"-m", "msg"}, msg: "messages are only compatible with the docker image format"},
		{name: "unknown format", ref: id, args: []string{"--format", "v1"}, msg: `unknown --format "v1"`},
		{name: "unknown base in the store", ref: id, args: []string{"--from", "containers-storage:nope"}, msg: `no image "nope"`},
		{name: "bad store image name", ref: id, args: []string{"-o", "containers-storage:Bad Name"}, msg: "bad image name"},
		{name: "bad change", ref: id, args: []string{"-c", "FROM x"}, msg: "from is not a valid change command"},
		{name: "bad stop signal", ref: id, args: []string{"-c", "STOPSIGNAL SIGNOPE"}, msg: "invalid signal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := p.Root
			if tc.setup != nil {
				root = tc.setup(t)
			}
			dir := filepath.Join(t.TempDir(), "layout")
			args := append([]string{"commit", "--storage-root", root, "--run-root", p.RunRoot, "--container", tc.ref, "-q", "-o", "oci:" + dir}, tc.args...)
			if tc.auto {
				args = append(args, "--docker-root", oracle.NewDocker(t).Root)
			} else {
				args = append(args, "--runtime", "podman")
			}
			_, stderr := lc(t, true, args...)
			if !strings.HasPrefix(stderr, "layercommit: ") || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.msg) {
				t.Errorf("stderr %q, want one layercommit: line containing %q", stderr, tc.msg)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("%s was written (%v)", dir, err)
			}
		})
	}
}
