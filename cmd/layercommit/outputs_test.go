package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/layercommit/layercommit/internal/oracle"
)

// TestBuildOutputs: one build, every kind of destination at once, each
// checked with the real tool: skopeo for layouts and archives, the
// 20.10 dockerd for docker-daemon: (docker run of what was loaded, and a
// build FROM an image read back out of it).
func TestBuildOutputs(t *testing.T) {
	d := oracle.NewDocker(t)
	skopeo := oracle.Tool(t, "skopeo")
	t.Setenv("DOCKER_HOST", d.Host)
	run := fmt.Sprint(time.Now().UnixNano())
	loaded := "lc-outputs/app:" + run
	t.Cleanup(func() { d.Try("rmi", "-f", loaded, "lc-outputs/from-daemon:"+run) })
	// The base is read from dockerd itself (docker-daemon: as a source).
	ctx := writeContext(t, "FROM docker-daemon:"+d.Base+"\nCOPY f /f\nRUN cat /f > /g\nCMD [\"cat\", \"/g\"]\n", map[string]string{"f": "hello\n"})
	state, out := t.TempDir(), t.TempDir()
	p := func(n string) string { return filepath.Join(out, n) }
	id, stderr := cacheBuild(t, true, "--state-dir", state, "-t", loaded, "--load",
		"-o", "oci:"+p("layout")+":v1",
		"-o", "docker-archive:"+p("docker.tar")+":app:v1",
		"--output", "type=oci,dest="+p("oci.tar")+",name=v1",
		"--output", "type=docker,dest="+p("bk-docker.tar")+",name=app:v1",
		"--output", "type=local,dest="+p("rootfs"),
		"--output", "type=tar,dest="+p("rootfs.tar"),
		"--output", `type=image,"name=app:one,app:two"`,
		ctx)

	// Every image destination holds the same image: same config, same
	// layer blobs; the blobs were compressed once (the state dir holds
	// the two new layers and nothing else). A docker-archive holds its
	// layers uncompressed (docker save's format), named by diffID.
	var layers, diffIDs string
	for _, ref := range []string{"oci:" + p("layout") + ":v1", "docker-archive:" + p("docker.tar"), "oci-archive:" + p("oci.tar") + ":v1",
		"docker-archive:" + p("bk-docker.tar"), "oci:" + filepath.Join(state, "images") + ":docker.io/library/app:two"} {
		cfg, err := exec.Command(skopeo, "inspect", "--config", "--raw", ref).Output()
		if err != nil {
			t.Fatalf("skopeo inspect %s: %v", ref, err)
		}
		if got := fmt.Sprintf("sha256:%x", sha256Sum(cfg)); got != id {
			t.Errorf("%s: config %s, want %s", ref, got, id)
		}
		raw, err := exec.Command(skopeo, "inspect", "--format", "{{.Layers}}", ref).Output()
		if err != nil {
			t.Fatalf("skopeo inspect %s: %v", ref, err)
		}
		want := &layers
		if strings.HasPrefix(ref, "docker-archive:") {
			want = &diffIDs
		}
		if *want == "" {
			*want = string(raw)
		} else if string(raw) != *want {
			t.Errorf("%s: layers %s, want %s", ref, raw, *want)
		}
	}
	blobs, _ := os.ReadDir(filepath.Join(state, "blobs", "sha256"))
	if len(blobs) != 2 {
		t.Errorf("state dir holds %d blobs, want the 2 new layers (one compression pass)", len(blobs))
	}
	for _, b := range blobs {
		if !strings.Contains(layers, b.Name()) {
			t.Errorf("state dir blob %s is in no destination", b.Name())
		}
	}

	// dockerd runs what was loaded, under the -t name, with our ID.
	if got := d.Run(t, "run", "--rm", loaded); got != "hello" {
		t.Errorf("docker run %s: %q, want hello", loaded, got)
	}
	if got := d.Run(t, "image", "inspect", "--format", "{{.Id}}", loaded); got != id {
		t.Errorf("dockerd has %s as %s, want %s", loaded, got, id)
	}
	// And gives it back: a build FROM it in dockerd runs.
	ctx2 := writeContext(t, "FROM docker-daemon:"+loaded+"\nRUN cat /g > /h\n", map[string]string{})
	cacheBuild(t, true, "--state-dir", state, "-o", "docker-daemon:lc-outputs/from-daemon:"+run, ctx2)
	if got := d.Run(t, "run", "--rm", "lc-outputs/from-daemon:"+run, "cat", "/h"); got != "hello" {
		t.Errorf("docker run of a build FROM docker-daemon: %q, want hello", got)
	}

	// type=local and type=tar hold the final file system.
	if b, err := os.ReadFile(p("rootfs/g")); err != nil || string(b) != "hello\n" {
		t.Errorf("type=local: /g holds %q, %v", b, err)
	}
	if fi, err := os.Lstat(p("rootfs/bin/sh")); err != nil || fi.Mode()&os.ModeType == os.ModeDir {
		t.Errorf("type=local: no /bin/sh: %v", err)
	}
	list, err := exec.Command("tar", "tf", p("rootfs.tar")).Output()
	if err != nil || !strings.Contains("\n"+string(list), "\ng\n") || !strings.Contains(string(list), "bin/sh") {
		t.Errorf("type=tar: %v\n%s", err, list)
	}
	if !strings.Contains(stderr, "Step 3/4") {
		t.Errorf("no progress:\n%s", stderr)
	}
	names := names(storeImages(t, state))
	if names["docker.io/library/app:one"] != id || names["docker.io/library/app:two"] != id {
		t.Errorf("type=image names: %v", names)
	}
}

// TestBuildOutputsBadInput: a bad destination fails before any step,
// with one line, and nothing is written: not the other destinations, not
// the state dir, not dockerd.
func TestBuildOutputsBadInput(t *testing.T) {
	oracle.Root(t)
	ctx := writeContext(t, "FROM scratch\nCOPY f /f\n", map[string]string{"f": "x\n"})
	tmp := t.TempDir()
	full := filepath.Join(tmp, "full")
	must(t, os.MkdirAll(filepath.Join(full, "x"), 0o755))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown type", []string{"-o", "type=s3,dest=x"}, `bad --output "type=s3,dest=x": unsupported type "s3" (oci, docker, image, registry, local or tar)`},
		{"local without dest", []string{"-o", "type=local"}, `bad --output "type=local": type=local needs dest=`},
		{"stdout", []string{"-o", "type=tar,dest=-"}, `bad --output "type=tar,dest=-": dest=- (stdout) is not supported`},
		{"docker without name or dest", []string{"-o", "type=docker"}, `bad --output "type=docker": type=docker without dest= loads into dockerd and needs name=`},
		{"push without name", []string{"-o", "type=image,push=true"}, `bad --output "type=image,push=true": push=true needs name=`},
		{"unknown key", []string{"-o", "type=oci,dest=x,colour=red"}, `bad --output "type=oci,dest=x,colour=red": unknown key "colour"`},
		{"load without -t", []string{"--load"}, `--load needs -t NAME (the name to load the image as)`},
		{"docker-daemon without name", []string{"-o", "docker-daemon:"}, `destination docker-daemon:: docker-daemon: wants a name, as in docker-daemon:NAME[:TAG]`},
		{"bad DOCKER_HOST", []string{"-o", "docker-daemon:app", "--load", "-t", "app"}, `destination docker-daemon:docker.io/library/app:latest: bad DOCKER_HOST "ssh://host": want unix:// or tcp://`},
		{"local into a full dir", []string{"-o", "type=local,dest=" + full}, "destination rootfs:" + full + ": rootfs: " + full + " exists and is not empty"},
		{"tar with no dir", []string{"-o", "type=tar,dest=" + filepath.Join(tmp, "no/x.tar")}, "destination rootfs-tar:" + filepath.Join(tmp, "no/x.tar") + ": rootfs-tar: no directory for " + filepath.Join(tmp, "no/x.tar")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("DOCKER_HOST", "ssh://host")
			state := filepath.Join(t.TempDir(), "state")
			first := filepath.Join(t.TempDir(), "first")
			args := append([]string{"build", "--state-dir", state, "-o", "oci:" + first}, tc.args...)
			code, _, stderr := cli(append(args, ctx)...)
			if code == 0 || stderr != "layercommit: "+tc.want+"\n" {
				t.Errorf("exit %d, stderr %q, want %q", code, stderr, "layercommit: "+tc.want+"\n")
			}
			for _, p := range []string{state, first} {
				if _, err := os.Stat(p); err == nil {
					t.Errorf("%s written", p)
				}
			}
		})
	}
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

// TestBuildProgress: --progress modes on stderr; stdout holds only the
// image ID whatever the mode.
func TestBuildProgress(t *testing.T) {
	oracle.Root(t)
	ctx := writeContext(t, "FROM scratch\nCOPY f /f\nLABEL a=b\n", map[string]string{"f": "x\n"})
	state := t.TempDir()
	for _, tc := range []struct {
		mode  string
		check func(t *testing.T, stderr string)
	}{
		{"plain", func(t *testing.T, stderr string) {
			for _, want := range []string{"#1 [1/3] FROM scratch\n", "#2 [2/3] COPY f /f\n", "#3 [3/3] LABEL a=b\n", "#3 DONE "} {
				if !strings.Contains(stderr, want) {
					t.Errorf("no %q in:\n%s", want, stderr)
				}
			}
		}},
		{"rawjson", func(t *testing.T, stderr string) {
			steps := 0
			for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
				var e struct{ Type string }
				if err := json.Unmarshal([]byte(l), &e); err != nil {
					t.Fatalf("stderr line %q is not JSON", l)
				}
				if e.Type == "step" {
					steps++
				}
			}
			if steps != 3 {
				t.Errorf("%d step events, want 3:\n%s", steps, stderr)
			}
		}},
		{"quiet", func(t *testing.T, stderr string) {
			if stderr != "" {
				t.Errorf("quiet printed %q", stderr)
			}
		}},
		{"auto", func(t *testing.T, stderr string) { // not a terminal: plain
			if !strings.Contains(stderr, "#2 [2/3] COPY f /f\n") {
				t.Errorf("auto off a terminal is not plain:\n%s", stderr)
			}
		}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			code, out, stderr := cli("build", "--state-dir", state, "--no-cache", "--progress", tc.mode, "-o", "oci:"+filepath.Join(t.TempDir(), "o"), ctx)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if !regexp.MustCompile(`^sha256:[0-9a-f]{64}\n$`).MatchString(out) {
				t.Errorf("stdout %q, want the image ID only", out)
			}
			tc.check(t, stderr)
		})
	}
	out := filepath.Join(t.TempDir(), "o")
	code, _, stderr := cli("build", "--state-dir", state, "--progress", "fancy", "-o", "oci:"+out, ctx)
	if code == 0 || stderr != "layercommit: build: bad --progress \"fancy\" (want auto, plain, tty, rawjson, quiet)\n" {
		t.Errorf("bad --progress: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("bad --progress wrote %s", out)
	}
}
