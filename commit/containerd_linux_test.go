package commit_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/layercommit/layercommit/commit"
	"github.com/layercommit/layercommit/export"
	"github.com/layercommit/layercommit/internal/oracle"
)

// containerdCreated reads the created time Docker's containerd image
// store gave the image whose manifest digest is id (its content store
// files are read as they are: they are immutable once written).
func containerdCreated(t *testing.T, root, id string) time.Time {
	t.Helper()
	blobs := filepath.Join(root, "containerd", "daemon", "io.containerd.content.v1.content", "blobs", "sha256")
	read := func(d string) []byte {
		b, err := os.ReadFile(filepath.Join(blobs, strings.TrimPrefix(d, "sha256:")))
		must(t, err)
		return b
	}
	var m struct {
		Config struct{ Digest string }
	}
	must(t, json.Unmarshal(read(id), &m))
	var c struct {
		Created time.Time `json:"created"`
	}
	must(t, json.Unmarshal(read(m.Config.Digest), &c))
	return c.Created
}

// waitReady waits for a container of a containerd-store Docker to
// create /ready, seen through its rootfs mount under the data root.
func waitReady(t *testing.T, d *oracle.Docker, id string) {
	t.Helper()
	p := filepath.Join(d.Root, "rootfs", "overlayfs", id, "ready")
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(p); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("container %s did not create /ready in 10s", id)
}

// containerdChangeSets are change sets a container makes, for the
// containerd image store tests: each runs in the busybox base and ends by
// creating /ready.
var containerdChangeSets = []struct {
	name, script string
}{
	{"modify and delete", "echo hi > /data/x; rm /data/basefile; echo more >> /etc/passwd"},
	{"dirs", "mkdir -p /a/b/c; touch /a/b/c/d; rm -rf /var; mkdir /var; echo x > /var/new; rmdir /tmp"},
	{"links", "echo l > /data/l1; ln /data/l1 /data/l2; ln -s /data/l1 /data/sym; ln /bin/busybox /data/bb; rm /bin/true"},
	{"modes and nodes", "chmod 4750 /data/basefile; chown 7:8 /etc/group; mknod /data/null c 1 3; mkfifo /data/fifo; touch -d '2001-02-03 04:05:06' /data/old"},
	{"long names", "mkdir -p /data/" + strings.Repeat("d", 120) + "; touch /data/" + strings.Repeat("d", 120) + "/" + strings.Repeat("f", 200)},
}

// TestCommitContainerDocker29ContainerdSameID commits running containers
// of the shared Docker 29 on its containerd image store from the data
// root alone (the store's dbs are held by the live containerd: read
// through consistent copies) into an OCI layout, for each change set and
// with -m, -a and -c: the image ID, the manifest digest, must be the one
// docker commit gives for the same created time (so layer blob, diffID,
// config and manifest are dockerd's byte for byte).
func TestCommitContainerDocker29ContainerdSameID(t *testing.T) {
	d := oracle.NewDocker29Containerd(t)
	for i, cs := range containerdChangeSets {
		t.Run(cs.name, func(t *testing.T) {
			id := d.Run(t, "run", "-d", "--network", "none", d.Base, "sh", "-c", cs.script+"; touch /ready; exec sleep 3600")
			t.Cleanup(func() { d.Try("rm", "-f", id) })
			waitReady(t, d, id)
			var author, comment string
			var changes []string
			args := []string{"commit"}
			if i%2 == 1 {
				author, comment = "Ann <ann@example.com>", "saved <&>"
				changes = []string{"ENV A=1 B=2", `CMD ["sh"]`, "EXPOSE 8080", "LABEL x=y", "WORKDIR /data"}
				args = append(args, "-a", author, "-m", comment)
				for _, c := range changes {
					args = append(args, "-c", c)
				}
			}
			ref := d.Run(t, append(args, id)...)
			t.Cleanup(func() { d.Try("rmi", ref) })

			to := "oci:" + filepath.Join(t.TempDir(), "layout") + ":c"
			got, err := commit.CommitContainer(context.Background(), commit.ContainerRequest{
				Container: id[:12], To: to, Changes: changes, Author: author, Comment: comment,
				Created: containerdCreated(t, d.Root, ref), Pause: true, StoreCompat: true,
				Output: commit.Output{Options: []export.Option{export.WithDockerRoot(d.Root)}},
			})
			must(t, err)
			if got.String() != ref {
				t.Fatalf("CommitContainer gave %s, docker commit gave %s", got, ref)
			}
			img, err := export.Open(context.Background(), to)
			must(t, err)
			// Fast: validate reads every layer as gzip, and the base is an
			// uncompressed one (docker load keeps docker save's tars).
			must(t, validate.Image(img, validate.Fast))
			if dg, err := img.Digest(); err != nil || dg != got {
				t.Fatalf("the layout holds manifest %s (%v), the commit returned %s", dg, err, got)
			}
		})
	}
}

// TestCommitContainerDocker29ContainerdWriteBack commits a container of a
// private Docker 29 on its containerd image store back into that store
// while the daemon is stopped, tagged and untagged: the restarted daemon
// lists both under the IDs the commit printed and runs them with the
// container's changes. With the daemon running the write is refused in
// one line and the store is left as it was.
func TestCommitContainerDocker29ContainerdWriteBack(t *testing.T) {
	d := oracle.StartDocker29Containerd(t)
	id := d.Run(t, "run", "-d", "--network", "none", d.Base, "sh", "-c",
		"echo hi > /data/x; rm /data/basefile; touch /ready; exec sleep 3600")
	waitReady(t, &d.Docker, id)
	req := func(to string) commit.ContainerRequest {
		return commit.ContainerRequest{Container: id, To: to, Pause: true, StoreCompat: true, Comment: "written back",
			Output: commit.Output{Options: []export.Option{export.WithDockerRoot(d.Root)}}}
	}

	before := d.Run(t, "images", "-a", "-q", "--no-trunc")
	if _, err := commit.CommitContainer(context.Background(), req("docker-root:lc-live:1")); err == nil ||
		!strings.Contains(err.Error(), "stop it") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("writing into a live store: %v, want a one-line refusal", err)
	}
	if after := d.Run(t, "images", "-a", "-q", "--no-trunc"); after != before {
		t.Fatalf("a refused write changed the images:\n%s\nbefore:\n%s", after, before)
	}

	d.Stop(t)
	tagged, err := commit.CommitContainer(context.Background(), req("docker-root:lc-wb:1"))
	must(t, err)
	untagged, err := commit.CommitContainer(context.Background(), req("docker-root:"))
	must(t, err)
	d.Start(t)
	if got := d.Run(t, "image", "inspect", "-f", "{{.Id}}", "lc-wb:1"); got != tagged.String() {
		t.Fatalf("docker lists lc-wb:1 as %s, the commit printed %s", got, tagged)
	}
	if got := d.Run(t, "image", "inspect", "-f", "{{.Id}}", untagged.String()); got != untagged.String() {
		t.Fatalf("docker lists the untagged commit as %s, the commit printed %s", got, untagged)
	}
	for _, ref := range []string{"lc-wb:1", untagged.String()} {
		out := d.Run(t, "run", "--rm", "--network", "none", ref, "sh", "-c", "cat /data/x; ls /data")
		if out != "hi\nx" {
			t.Fatalf("docker run %s shows %q, want the container's changes", ref, out)
		}
	}
	if h := d.Run(t, "history", "--format", "{{.Comment}}", "lc-wb:1"); !strings.HasPrefix(h, "written back") {
		t.Fatalf("docker history of lc-wb:1: %q", h)
	}
}

// TestCommitContainerdRuntime commits containers that ctr runs in the
// k8s.io namespace of private containerds, Debian's 1.6.20 and 2.3.3,
// with --runtime containerd: into an OCI layout while the daemon runs
// (its dbs read through consistent copies), the new layer must be the
// blob `ctr snapshots diff` writes of the container's snapshot, byte for
// byte (1.6 stamps whiteouts with the time of the diff, so its change
// set deletes nothing); then, the daemon stopped, into the same root as
// containerd:NAME, which the restarted daemon lists and runs.
func TestCommitContainerdRuntime(t *testing.T) {
	for _, tc := range []struct {
		version, script string
	}{
		{"1.6", "echo hi > /data/x; mkdir -p /a/b; ln /data/x /a/b/l; chmod 700 /etc"},
		{"2.3", "echo hi > /data/x; mkdir -p /a/b; ln /data/x /a/b/l; rm /data/basefile; rm -rf /var; mkdir /var"},
	} {
		t.Run(tc.version, func(t *testing.T) {
			c := oracle.StartContainerd(t, tc.version, "k8s.io")
			id := fmt.Sprintf("lc-%d", os.Getpid())
			c.RunTask(t, c.Base, id, tc.script)
			opts := func(to string) commit.ContainerRequest {
				return commit.ContainerRequest{Container: id, To: to, Runtime: commit.RuntimeContainerd, Pause: true,
					StoreCompat: true, ContainerdRoot: c.Root, ContainerdState: c.State, Namespace: "k8s.io",
					Changes: []string{"ENV K=v"}, Comment: "from k8s.io"}
			}
			to := "oci:" + filepath.Join(t.TempDir(), "layout") + ":c"
			got, err := commit.CommitContainer(context.Background(), opts(to))
			must(t, err)
			img, err := export.Open(context.Background(), to)
			must(t, err)
			if dg, err := img.Digest(); err != nil || dg != got {
				t.Fatalf("the layout holds manifest %s (%v), the commit returned %s", dg, err, got)
			}
			ls, err := img.Layers()
			must(t, err)
			ours, err := ls[len(ls)-1].Digest()
			must(t, err)
			blob, _, err := c.Try("snapshots", "--snapshotter", "overlayfs", "diff", id)
			if err != nil {
				t.Fatalf("ctr snapshots diff %s: %v", id, err)
			}
			if want := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(blob))); ours.String() != want {
				t.Fatalf("our layer is %s, ctr snapshots diff's %s", ours, want)
			}
			cfg, err := img.ConfigFile()
			must(t, err)
			if h := cfg.History[len(cfg.History)-1]; !strings.Contains(h.CreatedBy, "touch /ready") || h.Comment != "from k8s.io" {
				t.Fatalf("history entry %+v: want the task's command and the comment", h)
			}
			if !slices.Contains(cfg.Config.Env, "K=v") {
				t.Fatalf("config env %v lacks the change", cfg.Config.Env)
			}

			c.Stop(t)
			wb, err := commit.CommitContainer(context.Background(), opts("containerd:lc/k8s:1"))
			must(t, err)
			c.Start(t)
			if out := c.Run(t, "images", "ls"); !strings.Contains(out, "docker.io/lc/k8s:1") || !strings.Contains(out, wb.String()) {
				t.Fatalf("ctr images ls after the write-back:\n%s", out)
			}
			// The base has no Env, so ctr gives its default PATH only to
			// the base: the commit's Env (K=v) has none, as docker
			// commit's would not.
			if out := c.Run(t, "run", "--rm", "--snapshotter", "overlayfs", "docker.io/lc/k8s:1", id+"-2", "/bin/sh", "-c", "cat /a/b/l; echo $K"); out != "hi\nv" {
				t.Fatalf("ctr run of the commit: %q", out)
			}
		})
	}
}
