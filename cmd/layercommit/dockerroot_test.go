package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layercommit/layercommit/dockerroot"
	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/internal/oracle"
)

// createdOf reads the created time of an image in a data root.
func createdOf(t *testing.T, root, id string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "image/overlay2/imagedb/content/sha256", strings.TrimPrefix(id, "sha256:")))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Created time.Time `json:"created"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c.Created.Format(time.RFC3339Nano)
}

// TestCommitContainerSameIDAsDockerd commits running containers of the
// shared dockerd with and without -m, -a and -c, from the data root with
// no daemon involved, into an OCI layout: the printed image ID must be the
// one docker commit gives for the same created time.
func TestCommitContainerSameIDAsDockerd(t *testing.T) {
	for _, daemon := range []struct {
		name, profile string
		docker        func(testing.TB) *oracle.Docker
	}{
		{"docker-20.10", "docker-20.10", oracle.NewDocker},
		{"docker-29", "docker-29", oracle.NewDocker29},
	} {
		t.Run(daemon.name, func(t *testing.T) { testCommitContainerSameID(t, daemon.docker(t), daemon.profile) })
	}
}

// testCommitContainerSameID commits containers of d with docker commit and
// with layercommit commit --container --compat profile at docker's
// created time: the image IDs must be equal.
func testCommitContainerSameID(t *testing.T, d *oracle.Docker, profile string) {
	cases := []struct {
		name string
		args []string
	}{
		{"plain", nil},
		{"message and author", []string{"-m", "saved", "-a", "Ann <ann@example.com>"}},
		{"changes", []string{"-m", "changed", "-c", "ENV A=1 B=2", "-c", "CMD [\"sh\"]", "-c", "EXPOSE 8080", "-c", "LABEL x=y", "-c", "WORKDIR /data"}},
		{"onbuild and ports", []string{"-c", "ONBUILD RUN true", "-c", "EXPOSE 53/udp 80", "-c", "USER 1:2", "-c", "VOLUME /v"}},
	}
	if profile != "docker-20.10" {
		cases = append(cases, struct {
			name string
			args []string
		}{"stopsignal", []string{"-c", "STOPSIGNAL SIGINT", "-c", "ENTRYPOINT [\"/bin/sh\"]"}})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := d.Run(t, "run", "-d", "--network", "none", d.Base, "sh", "-c", "echo x > /data/x; rm /etc/group; touch /ready; exec sleep 3600")
			t.Cleanup(func() { d.Try("rm", "-f", id) })
			d.WaitReady(t, id)
			args := append([]string{"commit"}, tc.args...)
			ref := d.Run(t, append(args, id)...)
			t.Cleanup(func() { d.Try("rmi", ref) })

			dir := filepath.Join(t.TempDir(), "layout")
			lcArgs := append([]string{"commit", "--docker-root", d.Root, "--container", id[:12], "--created", createdOf(t, d.Root, ref),
				"--compat", profile, "-q", "-o", "oci:" + dir + ":c"}, tc.args...)
			got, _ := lc(t, false, lcArgs...)
			if got != ref {
				t.Fatalf("layercommit printed %s, docker commit gave %s", got, ref)
			}
			checkImage(t, "oci:"+dir+":c")
		})
	}
}

// TestCommitContainerPause freezes a running container through its cgroup
// while its upper dir is read.
func TestCommitContainerPause(t *testing.T) {
	d := oracle.NewDocker(t)
	name := fmt.Sprintf("lc-pause-%d", time.Now().UnixNano())
	id := d.Run(t, "run", "-d", "--name", name, "--network", "none", d.Base, "sh", "-c", "while true; do date > /data/now; done")
	t.Cleanup(func() { d.Try("rm", "-f", id) })
	root, err := dockerroot.Open(d.Root)
	if err != nil {
		t.Fatal(err)
	}
	var c *dockerroot.Container
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		if c, err = root.Container(id); err == nil && c.Running && c.Pid > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if c == nil || !c.Running {
		t.Fatalf("container not running: %v", err)
	}
	thaw, err := dockerroot.Freeze(c.Pid, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := dockerroot.FrozenState(c.Pid); s != "FROZEN" && s != "frozen 1" {
		t.Errorf("after Freeze the cgroup is %q", s)
	}
	if err := thaw(); err != nil {
		t.Fatal(err)
	}
	if s, _ := dockerroot.FrozenState(c.Pid); s == "FROZEN" || s == "frozen 1" {
		t.Errorf("after thaw the cgroup is %q", s)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	// By name, as docker commit takes it.
	lc(t, false, "commit", "--docker-root", d.Root, "--container", name, "--pause", "-q", "-o", "oci:"+dir+":p")
	if s, _ := dockerroot.FrozenState(c.Pid); s == "FROZEN" || s == "frozen 1" {
		t.Errorf("commit left the container %q", s)
	}
	checkImage(t, "oci:"+dir+":p")
}

// TestDockerRootCLI writes a committed container into a stopped private
// daemon's root through the CLI, and reads it back: inspect shows the
// store chain, the restarted daemon lists and runs it, and it can be
// copied out to an OCI layout.
func TestDockerRootCLI(t *testing.T) {
	d := oracle.StartDaemon(t)
	id := d.Run(t, "run", "-d", "--network", "none", d.Base, "sleep", "3600")
	if err := fixtures.Apply(d.Run(t, "inspect", "-f", "{{.GraphDriver.Data.MergedDir}}", id),
		fixtures.CreateFile("data/cli", []byte("from the cli\n"), 0o644), fixtures.Remove("data/basefile")); err != nil {
		t.Fatal(err)
	}
	d.Run(t, "stop", "-t", "0", id)
	ref := d.Run(t, "commit", "-m", "m", id, "ref:1")
	created := createdOf(t, d.Root, ref)
	d.Run(t, "rmi", "ref:1")

	// A live daemon is refused.
	_, stderr := lc(t, true, "commit", "--docker-root", d.Root, "--container", id, "-m", "m", "--compat", "docker-20.10", "-o", "docker-root:ours:1")
	assertOneLineError(t, stderr, "--force")

	d.Stop(t)
	got, _ := lc(t, false, "commit", "--docker-root", d.Root, "--container", id, "-m", "m", "--created", created,
		"--compat", "docker-20.10", "-q", "-o", "docker-root:ours:1")
	if got != ref {
		t.Errorf("layercommit printed %s, docker commit gave %s", got, ref)
	}
	out, _ := lcOut(t, "inspect", "--docker-root", d.Root, "docker-root:ours:1")
	for _, want := range []string{got, "ours:1", "CACHE-ID", "l/", filepath.Join(d.Root, "overlay2")} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	layout := filepath.Join(t.TempDir(), "layout")
	if copied, _ := lc(t, false, "copy", "--docker-root", d.Root, "docker-root:ours:1", "oci:"+layout+":copied"); copied != got {
		t.Errorf("copy printed %s, want %s", copied, got)
	}
	checkImage(t, "oci:"+layout+":copied")
	// A Docker-typed image lands in the layout with OCI types, which the
	// real peers read.
	if raw, err := exec.Command(oracle.Tool(t, "skopeo"), "inspect", "--raw", "oci:"+layout+":copied").CombinedOutput(); err != nil || !strings.Contains(string(raw), "application/vnd.oci.image.manifest.v1+json") {
		t.Errorf("skopeo inspect: %v\n%s", err, raw)
	}
	if out, err := exec.Command(oracle.Tool(t, "umoci"), "stat", "--image", layout+":copied").CombinedOutput(); err != nil {
		t.Errorf("umoci stat: %v\n%s", err, out)
	}

	// The image resolves by full ID and by a 12-digit prefix too, and is
	// a base for a build, whose RUN uses dockerd's own diff dirs as lowers.
	for _, ref := range []string{got, strings.TrimPrefix(got, "sha256:")[:12]} {
		if out, _ := lcOut(t, "inspect", "--docker-root", d.Root, "docker-root:"+ref); !strings.Contains(out, got) {
			t.Errorf("inspect docker-root:%s:\n%s", ref, out)
		}
	}
	ctxDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM docker-root:ours:1\nRUN cat /data/cli > /data/built\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	built, _ := lc(t, false, "build", "-q", "--docker-root", d.Root, "--state-dir", t.TempDir(), "-o", "oci:"+layout+":built", ctxDir)
	bimg := checkImage(t, "oci:"+layout+":built")
	if cf, err := bimg.ConfigFile(); err != nil || len(cf.RootFS.DiffIDs) != 3 {
		t.Errorf("built image %s: %v layers, %v", built, cf.RootFS.DiffIDs, err)
	}

	d.Start(t)
	if listed := d.Run(t, "images", "--no-trunc", "-q", "ours:1"); listed != got {
		t.Fatalf("docker images lists %q, want %s", listed, got)
	}
	if out := d.Run(t, "run", "--rm", "--network", "none", "ours:1", "sh", "-c", "cat /data/cli; ls /data"); out != "from the cli\ncli" {
		t.Errorf("docker run shows %q", out)
	}
}

func lcOut(t *testing.T, args ...string) (string, string) {
	t.Helper()
	code, out, errs := cli(args...)
	if code != 0 {
		t.Fatalf("layercommit %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out, errs
}

// TestDockerRootBadInput: each bad data root or reference gives one line
// and writes nothing.
func TestDockerRootBadInput(t *testing.T) {
	d := oracle.NewDocker(t)
	tmp := t.TempDir()
	containerd := filepath.Join(tmp, "containerd-store")
	if err := fixtures.Apply(tmp,
		fixtures.CreateDir("containerd-store/containerd/daemon/io.containerd.content.v1.content", 0o700),
		fixtures.CreateDir("vfs-root/image/vfs", 0o700),
		fixtures.CreateDir("empty", 0o700),
	); err != nil {
		t.Fatal(err)
	}
	// Two images whose IDs share a 12-digit prefix cannot be made; a
	// one-digit prefix of a root with several images is ambiguous, and
	// too short; use a fake root with two configs sharing 12 digits.
	ambiguous := filepath.Join(tmp, "ambiguous")
	content := filepath.Join(ambiguous, "image/overlay2/imagedb/content/sha256")
	if err := os.MkdirAll(content, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"aaaaaaaaaaaa" + strings.Repeat("1", 52), "aaaaaaaaaaaa" + strings.Repeat("2", 52)} {
		if err := os.WriteFile(filepath.Join(content, h), []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A container whose layer is missing.
	broken := filepath.Join(tmp, "broken")
	if err := fixtures.Apply(tmp,
		fixtures.CreateDir("broken/image/overlay2", 0o700),
		fixtures.CreateDir("broken/containers/"+strings.Repeat("c", 64), 0o700),
		fixtures.CreateFile("broken/containers/"+strings.Repeat("c", 64)+"/config.v2.json",
			[]byte(`{"ID":"`+strings.Repeat("c", 64)+`","Name":"/broken","Image":"sha256:`+strings.Repeat("d", 64)+`","Driver":"overlay2","Config":{}}`), 0o600),
	); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "out")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing root", []string{"inspect", "--docker-root", filepath.Join(tmp, "nope"), "docker-root:x"}, "no such file"},
		{"not a root", []string{"inspect", "--docker-root", filepath.Join(tmp, "empty"), "docker-root:x"}, "not a Docker data root"},
		{"containerd store", []string{"inspect", "--docker-root", containerd, "docker-root:x"}, "containerd image store"},
		{"other driver", []string{"inspect", "--docker-root", filepath.Join(tmp, "vfs-root"), "docker-root:x"}, "vfs storage driver"},
		{"unknown name", []string{"inspect", "--docker-root", d.Root, "docker-root:no-such-image:v9"}, "not found"},
		{"ambiguous prefix", []string{"inspect", "--docker-root", ambiguous, "docker-root:aaaaaaaaaaaa"}, "ambiguous"},
		{"unknown container", []string{"commit", "--docker-root", d.Root, "--container", "no-such-container", "-o", "oci:" + out + ":x"}, "not found"},
		{"container layer missing", []string{"commit", "--docker-root", broken, "--container", "broken", "-o", "oci:" + out + ":x"}, "has no layer"},
		{"id as destination", []string{"commit", "--docker-root", d.Root, "--container", "x", "-o", "docker-root:" + strings.Repeat("a", 12)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := cli(tc.args...)
			if code == 0 {
				t.Fatal("exit 0")
			}
			assertOneLineError(t, stderr, tc.want)
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("output written: %v", err)
			}
		})
	}
}

// TestStopSignalChangePerProfile: Docker 20.10's commit refuses
// `-c STOPSIGNAL`, and so does --compat docker-20.10; docker-24 takes it.
func TestStopSignalChangePerProfile(t *testing.T) {
	d := oracle.NewDocker(t)
	id := d.Run(t, "run", "-d", "--network", "none", d.Base, "sh", "-c", "touch /ready; exec sleep 3600")
	t.Cleanup(func() { d.Try("rm", "-f", id) })
	d.WaitReady(t, id)
	_, dockerErr, err := d.Try("commit", "-c", "STOPSIGNAL SIGKILL", id)
	if err == nil || !strings.Contains(dockerErr, "stopsignal is not a valid change command") {
		t.Fatalf("docker commit -c STOPSIGNAL: %v %q", err, dockerErr)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	_, stderr := lc(t, true, "commit", "--docker-root", d.Root, "--container", id, "--compat", "docker-20.10", "-c", "STOPSIGNAL SIGKILL", "-o", "oci:"+dir+":x")
	assertOneLineError(t, stderr, "stopsignal is not a valid change command")
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("a refused commit left %s: %v", dir, err)
	}
	lc(t, false, "commit", "-q", "--docker-root", d.Root, "--container", id, "--compat", "docker-24", "-c", "STOPSIGNAL SIGKILL", "-o", "oci:"+dir+":x")
	img := checkImage(t, "oci:"+dir+":x")
	if cf, err := img.ConfigFile(); err != nil || cf.Config.StopSignal != "SIGKILL" {
		t.Errorf("docker-24 commit: StopSignal %q, %v", cf.Config.StopSignal, err)
	}
}
